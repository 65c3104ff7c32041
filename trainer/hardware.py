"""Which device and which dtype a model runs in: the one home of that choice, for training and generation.

``resolve_dtype("auto", device)`` is bfloat16 on a CUDA GPU that supports it and float32 on a CPU. ``float32`` and
``bfloat16`` are taken as given, so bf16 on a CPU is a choice (``training.dtype: bfloat16`` and the evaluators'
``dtype``), not a default: ``bench/cpu_dtype.py`` on an AMD EPYC with ``avx512_bf16`` (no AMX), 2 cores, found
bf16 3.3x faster per forward+backward and 3.8x faster at greedy generation, but the default search's DPO
candidate scored 0.6719 in bf16 against 0.6302 in float32 on the same 192 held-out prompts, a paired difference of
+0.0417 +- 0.0193: outside the 2 paired standard errors within which bf16 could have been the CPU default
(``bench/results/cpu_dtype.json``). ``cpu_flags`` reads ``/proc/cpuinfo`` for such reports (``amx_bf16`` and
``avx512_bf16``, ``FAST_BF16_FLAGS``, are the CPUs on which bf16 is fast; elsewhere torch emulates it).

Training keeps float32 master weights and runs bf16 under autocast (``PreferenceConfig.from_training``);
generation loads the weights in the resolved dtype (``trainer.generation.load_model``)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.config import DTYPES

CPUINFO = Path("/proc/cpuinfo")
FAST_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports in ``CPUINFO`` (empty where there is no such file)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype for a configured dtype name (``auto`` | ``float32`` | ``bfloat16``) on ``device``."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
