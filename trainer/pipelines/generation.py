"""Sampling K responses per prompt from a checkpoint, for the pipelines' self-generated data.

Two backends behind one call, ``sample_responses(model, conversations, options) -> list[list[str]]``:

- ``transformers``: ``evaluators.generation.chat`` (the project's batched generation: chat template, left
  padding, length-sorted batches, prompt stripped from the output) — the CPU default and the tested path.
- ``vllm``: used by ``backend="auto"`` when ``vllm`` is importable and a GPU is present. It runs in a spawned
  child process, so that vLLM's GPU memory is returned before the pipeline trains in the parent. It is not
  installed in the project's CI, so this branch is exercised only on GPU machines that have it.
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

from evaluators.generation import SamplingConfig, chat, load_model
from trainer.models import resolve_model_path
from trainer.pipelines.common import Messages

log = logging.getLogger(__name__)
BACKENDS = ("auto", "transformers", "vllm")


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample: ``num_samples`` responses per prompt; temperature 0 means greedy (then use 1 sample)."""

    num_samples: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 16
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown generation backend {self.backend!r}; known: {', '.join(BACKENDS)}")


def add_sampling_arguments(
    parser: argparse.ArgumentParser, num_samples: int, temperature: float = 0.7
) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--num-samples", type=int, default=num_samples, help="responses per prompt")
    group.add_argument("--temperature", type=float, default=temperature)
    group.add_argument("--top-p", type=float, default=SamplingOptions.top_p)
    group.add_argument("--max-new-tokens", type=int, default=SamplingOptions.max_new_tokens)
    group.add_argument("--sampling-batch-size", type=int, default=SamplingOptions.batch_size)
    group.add_argument("--sampling-seed", type=int, default=SamplingOptions.seed)
    group.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: vllm when importable on a GPU"
    )


def sampling_from_args(args: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.sampling_batch_size,
        seed=args.sampling_seed,
        backend=args.backend,
    )


def choose_backend(requested: str) -> str:
    if requested != "auto":
        return requested
    return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"


def sample_responses(
    model: str, conversations: Sequence[Messages], options: SamplingOptions
) -> list[list[str]]:
    """``options.num_samples`` replies (stripped strings) to each conversation, in the order given."""
    backend = choose_backend(options.backend)
    log.info(
        "sampling %d x %d responses from %s (%s)", len(conversations), options.num_samples, model, backend
    )
    if backend == "vllm":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_vllm_sample, resolve_model_path(model), list(conversations), options).result()
    return _transformers_sample(model, conversations, options)


def _transformers_sample(
    model: str, conversations: Sequence[Messages], options: SamplingOptions
) -> list[list[str]]:
    policy, tokenizer = load_model(model)  # on the CPU: evaluators.generation keeps its inputs there
    policy.config.use_cache = True  # checkpoints saved by TRL's trainer carry use_cache=False
    config = SamplingConfig(
        max_new_tokens=options.max_new_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        n=options.num_samples,
        batch_size=options.batch_size,
        seed=options.seed,
    )
    return chat(
        policy, tokenizer, conversations, config, description=f"sampling {options.num_samples} per prompt"
    )


def _vllm_sample(path: str, conversations: list[Messages], options: SamplingOptions) -> list[list[str]]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=path, seed=options.seed)
    params = SamplingParams(
        n=options.num_samples,
        temperature=options.temperature,
        top_p=options.top_p,
        max_tokens=options.max_new_tokens,
        seed=options.seed,
    )
    outputs = llm.chat(conversations, params, use_tqdm=True)
    return [[completion.text.strip() for completion in output.outputs] for output in outputs]
