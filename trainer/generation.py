"""Sampling replies from a model: one sampling config, one batched generation loop, two backends.

- ``load_model(name, dtype)``: a model on the hardware: on the GPU when one is visible, in the dtype that
  ``trainer.hardware.resolve_dtype`` picks (``auto``: bf16 on GPUs, float32 on CPUs).
- ``chat(model, tokenizer, conversations, config)``: replies of an already loaded transformers model.
  Conversations are rendered with the tokenizer's chat template (or a FastChat conversation template by name),
  padded on the left, sorted by length so that batches waste little padding, and decoded without the prompt.
- ``sample_responses(model_name, conversations, config)``: the same, for a model given by name, through the
  config's ``backend``: ``hf`` (``chat``; the CPU default and the tested path) or ``vllm`` (the optional
  ``vllm`` extra, imported only when chosen), which ``auto`` picks when ``vllm`` is installed and a GPU is
  present. vLLM runs in a spawned child process, so that its GPU memory is returned before the caller trains. It
  is not installed in the project's CI, so that branch is exercised only on GPU machines that have it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from rich.progress import Progress
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from trainer.chat import Messages, render
from trainer.config import DTYPES
from trainer.hardware import default_device, resolve_dtype
from trainer.models import load_policy, resolve_model_path

log = logging.getLogger(__name__)
BACKENDS = ("auto", "hf", "vllm")
VLLM_MISSING = (
    "the vllm generation backend needs the vllm package, which is not installed: on a GPU machine run "
    '`pip install -e ".[vllm]"`, or choose the hf backend'
)


@dataclass(frozen=True)
class SamplingConfig:
    """How to decode: ``num_samples`` replies per prompt; temperature 0 means greedy (then one sample is
    enough). ``backend`` chooses how ``sample_responses`` runs a model given by name, ``dtype`` the weights'
    dtype there (``trainer.hardware.resolve_dtype``)."""

    num_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 16
    seed: int = 0
    backend: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown generation backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


def add_sampling_arguments(parser: argparse.ArgumentParser, defaults: SamplingConfig) -> None:
    """The sampling flags of a pipeline's CLI, with the pipeline's own defaults."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--num-samples", type=int, default=defaults.num_samples, help="responses per prompt")
    group.add_argument("--temperature", type=float, default=defaults.temperature)
    group.add_argument("--top-p", type=float, default=defaults.top_p)
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    group.add_argument("--sampling-batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--sampling-seed", type=int, default=defaults.seed)
    group.add_argument(
        "--backend", choices=BACKENDS, default=defaults.backend, help="auto: vllm when installed and on a GPU"
    )
    group.add_argument(
        "--sampling-dtype",
        choices=DTYPES,
        default=defaults.dtype,
        help="auto: bf16 where the hardware is fast",
    )


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.sampling_batch_size,
        seed=args.sampling_seed,
        backend=args.backend,
        dtype=args.sampling_dtype,
    )


def load_model(model: str, dtype: str = "auto") -> tuple[PreTrainedModel, Tokenizer]:
    """A checkpoint directory, a hub id, or a preset name (`smollm2-135m-instruct`, `tiny`), in eval mode, on the
    GPU when one is visible, with its weights in ``resolve_dtype(dtype, device)``."""
    device = default_device()
    torch_dtype = resolve_dtype(dtype, device)
    policy, tokenizer = load_policy(model, torch_dtype)
    policy.to(device)
    policy.eval()
    policy.config.use_cache = True  # checkpoints saved by TRL's trainer carry use_cache=False
    log.info("loaded %s for generation on %s in %s", model, device, torch_dtype)
    return policy, tokenizer


def _stop_ids(model: PreTrainedModel, tokenizer: Tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def _generate_batch(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int, options: dict
) -> torch.Tensor:
    """`n` continuations per row. The prompt is encoded once and its KV cache copied `n` times, instead of
    `num_return_sequences`, which would encode every prompt `n` times (as costly as decoding on a CPU)."""
    if n == 1:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded positions
    cache = model(
        input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=positions[:, :-1]
    ).past_key_values
    cache.batch_repeat_interleave(n)
    return model.generate(
        input_ids=input_ids.repeat_interleave(n, dim=0),
        attention_mask=attention_mask.repeat_interleave(n, dim=0),
        past_key_values=cache,
        **options,
    )


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    config: SamplingConfig,
    description: str = "generating",
) -> list[list[str]]:
    """`config.num_samples` completions for each rendered prompt, in the order of `prompts`."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    n = config.num_samples
    options = dict(
        max_new_tokens=config.max_new_tokens,
        eos_token_id=_stop_ids(model, tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    if config.temperature > 0:
        options.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    torch.manual_seed(config.seed)
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=len(prompts) * n)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(
                model.device
            )
            output = _generate_batch(model, inputs["input_ids"], inputs["attention_mask"], n, options)
            texts = tokenizer.batch_decode(
                output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
            for row, index in enumerate(batch):
                results[index] = [t.strip() for t in texts[row * n : (row + 1) * n]]
            progress.advance(task, len(batch) * n)
    return results


def _truncate_at_stop(text: str, conv_template: str) -> str:
    """Cut a reply where the FastChat template's stop string starts, as FastChat's answer generation does."""
    from fastchat.conversation import get_conv_template

    stops = get_conv_template(conv_template).stop_str
    for stop in [stops] if isinstance(stops, str) else stops or []:
        text = text.split(stop)[0]
    return text.strip()


def chat(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    conversations: Sequence[Messages],
    config: SamplingConfig,
    conv_template: str | None = None,
    description: str = "generating",
) -> list[list[str]]:
    """`config.num_samples` assistant replies to each conversation."""
    prompts = [render(tokenizer, messages, conv_template) for messages in conversations]
    replies = generate(model, tokenizer, prompts, config, description)
    if conv_template is None:
        return replies
    return [[_truncate_at_stop(reply, conv_template) for reply in row] for row in replies]


def choose_backend(requested: str) -> str:
    """The backend that runs: ``auto`` is ``vllm`` when it is installed and a GPU is visible, else ``hf``. A
    ``vllm`` request without the package is an error that says how to install it."""
    installed = importlib.util.find_spec("vllm") is not None
    if requested == "vllm" and not installed:
        raise RuntimeError(VLLM_MISSING)
    if requested != "auto":
        return requested
    return "vllm" if installed and torch.cuda.is_available() else "hf"


def sample_responses(
    model: str,
    conversations: Sequence[Messages],
    config: SamplingConfig,
    conv_template: str | None = None,
    description: str | None = None,
) -> list[list[str]]:
    """``config.num_samples`` replies (stripped strings) to each conversation, in the order given, from the model
    given by name, through ``config.backend``; ``conv_template`` as in ``chat``."""
    backend = choose_backend(config.backend)
    log.info(
        "sampling %d x %d responses from %s (%s)", len(conversations), config.num_samples, model, backend
    )
    if backend == "vllm":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            path = resolve_model_path(model)
            return pool.submit(_vllm_sample, path, list(conversations), config, conv_template).result()
    policy, tokenizer = load_model(model, config.dtype)
    description = description or f"sampling {config.num_samples} per prompt"
    return chat(policy, tokenizer, conversations, config, conv_template, description)


def _vllm_sample(
    path: str, conversations: list[Messages], config: SamplingConfig, conv_template: str | None
) -> list[list[str]]:
    from vllm import LLM, SamplingParams

    dtype = str(resolve_dtype(config.dtype, default_device())).removeprefix("torch.")
    llm = LLM(model=path, seed=config.seed, dtype=dtype)
    params = SamplingParams(
        n=config.num_samples,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    if conv_template is None:
        outputs = llm.chat(conversations, params, use_tqdm=True)
        return [[completion.text.strip() for completion in output.outputs] for output in outputs]
    prompts = [render(llm.get_tokenizer(), messages, conv_template) for messages in conversations]
    outputs = llm.generate(prompts, params, use_tqdm=True)
    return [[_truncate_at_stop(c.text, conv_template) for c in output.outputs] for output in outputs]
