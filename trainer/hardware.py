"""Which device and which dtype a model runs in: the one home of that choice, for training and generation.

``resolve_dtype("auto", device)`` is bfloat16 on a CUDA GPU that supports it and on a CPU with fast bf16 matrix
instructions (``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``), float32 elsewhere. On a CPU without them torch
emulates bf16 and a matmul is several times slower than in float32; with them it is several times faster (an AMD
EPYC with ``avx512_bf16`` and no AMX, 2 cores: a 2048 x 2048 matmul at 753 GFLOP/s in bf16 vs 157 in float32).
``float32`` and ``bfloat16`` are taken as given.

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


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16)."""
    return bool(cpu_flags() & FAST_BF16_FLAGS)


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
    if device.startswith("cuda"):
        fast = torch.cuda.is_bf16_supported()
    else:
        fast = cpu_has_fast_bf16()
    return torch.bfloat16 if fast else torch.float32
