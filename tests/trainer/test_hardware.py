"""Device and dtype: ``auto`` is float32 on every CPU, whatever its flags (``/proc/cpuinfo``), for training and for
generation; ``bfloat16`` is taken as asked, with bf16 autocast over float32 master weights."""

import importlib.util

import pytest
import torch

import trainer.hardware
from trainer.config import TrainingConfig, TrainRun
from trainer.data import load_preference_dataset
from trainer.generation import SamplingConfig, chat, choose_backend, load_model, sample_responses
from trainer.hardware import FAST_BF16_FLAGS, cpu_flags, resolve_dtype
from trainer.models import load_policy
from trainer.trainer import PreferenceConfig, PreferenceTrainer

EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile amx_int8\n"
OLDER = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Pretend the CPU reports the given /proc/cpuinfo text."""

    def pretend(text: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(trainer.hardware, "CPUINFO", path)

    return pretend


def test_cpu_flags_are_read_from_cpuinfo(cpuinfo, tmp_path, monkeypatch):
    cpuinfo(EPYC)
    assert {"avx512_bf16", "avx2"} <= cpu_flags() and "vendor_id" not in cpu_flags()
    monkeypatch.setattr(trainer.hardware, "CPUINFO", tmp_path / "missing")
    assert cpu_flags() == frozenset()


@pytest.mark.parametrize(
    ("text", "auto"),
    [(EPYC, "avx512_bf16"), (SAPPHIRE_RAPIDS, "amx_bf16"), (OLDER, None)],
    ids=["avx512_bf16", "amx_bf16", "no-fast-bf16"],
)
def test_auto_dtype_on_cpu_is_float32_even_where_bf16_is_fast(cpuinfo, text, auto):
    # bench/results/cpu_dtype.json: bf16 moved the default DPO fitness beyond 2 paired standard errors
    cpuinfo(text)
    assert (cpu_flags() & FAST_BF16_FLAGS) == ({auto} if auto else set())
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp16", "cpu")


@pytest.mark.parametrize("text", [EPYC, OLDER], ids=["fast-bf16", "no-fast-bf16"])
def test_from_training_turns_bf16_on_only_when_asked_on_a_cpu(cpuinfo, tmp_path, text):
    cpuinfo(text)
    run = TrainRun(data="unused.jsonl", output_dir=str(tmp_path / "out"))
    args = PreferenceConfig.from_training(TrainingConfig(model="tiny"), run)
    assert args.use_cpu and args.bf16 is False
    assert PreferenceConfig.from_training(TrainingConfig(model="tiny", dtype="bfloat16"), run).bf16 is True
    assert not PreferenceConfig.from_training(TrainingConfig(model="tiny", dtype="float32"), run).bf16


def test_bf16_training_on_cpu_autocasts_over_float32_master_weights(cpuinfo, tmp_path, preference_file):
    cpuinfo(EPYC)
    run = TrainRun(data=str(preference_file), output_dir=str(tmp_path / "out"), save_model=False)
    training = TrainingConfig(model="tiny", max_steps=1, batch_size=4, dtype="bfloat16")
    args = PreferenceConfig.from_training(training, run)
    model, tokenizer = load_policy("tiny")
    seen: list[tuple[torch.dtype, bool]] = []
    model.lm_head.register_forward_hook(
        lambda module, inputs, output: seen.append((output.dtype, output.requires_grad))
    )
    _, dataset = load_preference_dataset(run.data)
    PreferenceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer).train()
    assert (torch.bfloat16, True) in seen  # the policy's training forward ran in bf16
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize(
    ("asked", "dtype"), [("auto", torch.float32), ("bfloat16", torch.bfloat16)], ids=["auto", "bfloat16"]
)
def test_generation_runs_in_the_resolved_dtype(cpuinfo, asked, dtype):
    cpuinfo(EPYC)
    model, tokenizer = load_model("tiny", asked)
    assert {p.dtype for p in model.parameters()} == {dtype} and model.device.type == "cpu"
    logits: list[torch.dtype] = []
    model.lm_head.register_forward_hook(lambda module, inputs, output: logits.append(output.dtype))
    replies = chat(model, tokenizer, [[{"role": "user", "content": "Hi"}]], SamplingConfig(max_new_tokens=3))
    assert isinstance(replies[0][0], str) and set(logits) == {dtype}


def test_sampling_dtype_is_validated():
    with pytest.raises(ValueError, match="dtype must be one of"):
        SamplingConfig(dtype="fp16")


def test_vllm_backend_without_vllm_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(RuntimeError, match=r"pip install -e \"\.\[vllm\]\""):
        choose_backend("vllm")
    with pytest.raises(RuntimeError, match="vllm package, which is not installed"):
        sample_responses("tiny", [[{"role": "user", "content": "Hi"}]], SamplingConfig(backend="vllm"))
    assert choose_backend("auto") == "hf"
