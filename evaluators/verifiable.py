"""Verifiable instruction following: the offline fitness of the embedded default.

Fitness = pass rate of greedy responses to held-out prompts (families x held-out topics, topics never used for
training), with its binomial standard error; `details["per_item"]` holds each prompt's pass (1) or fail (0) so
that two models can be compared by their paired difference (`evaluators.fitness.paired_delta`).

    python -m evaluators.verifiable --model PATH_OR_NAME --output-dir DIR            # evaluate
    python -m evaluators.verifiable --build-pairs --model NAME --output-dir DIR      # sample + pair training data
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from evaluators.cli import print_fitness
from evaluators.fitness import Fitness, proportion_stderr
from evaluators.verifiable_data import PairBuildConfig, build_pairs
from evaluators.verifiable_families import DEFAULT_FAMILIES, FAMILIES
from evaluators.verifiable_prompts import Prompt, make_prompts, topics
from trainer.chat import Messages
from trainer.config import DTYPES
from trainer.generation import BACKENDS, SamplingConfig, chat, sample_responses


@dataclass(frozen=True)
class VerifiableSpec:
    """The held-out set (families x `n_heldout_topics` held-out topics from position `first_heldout_topic`) and
    greedy decoding settings; `backend` and `dtype` as in `trainer.generation.SamplingConfig` (auto: vLLM on a GPU
    when installed, bf16 where the hardware is fast)."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    n_heldout_topics: int = 25
    first_heldout_topic: int = 0  # evo.confirm scores on the topics after the selection set's
    seed: int = 0
    max_new_tokens: int = 64
    batch_size: int = 32
    generations_path: str | None = None  # write every held-out response here (JSONL) when set
    backend: str = "auto"
    dtype: str = "auto"


def heldout_prompts(spec: VerifiableSpec) -> list[Prompt]:
    return make_prompts(
        spec.families, topics("heldout", spec.n_heldout_topics, spec.first_heldout_topic), spec.seed
    )


def score_responses(prompts: Sequence[Prompt], responses: Sequence[str]) -> Fitness:
    """Pass rate of `responses` (one per prompt) with per-prompt and per-family details."""
    passed = [p.check(r) for p, r in zip(prompts, responses, strict=True)]
    rate, stderr = proportion_stderr(sum(passed), len(passed))
    by_family: dict[str, list[bool]] = defaultdict(list)
    for prompt, ok in zip(prompts, passed, strict=True):
        by_family[prompt.family].append(ok)
    details = {
        "per_item": {p.id: int(ok) for p, ok in zip(prompts, passed, strict=True)},
        "per_family": {family: sum(oks) / len(oks) for family, oks in by_family.items()},
    }
    return Fitness(rate, stderr, len(passed), details)


def _sampling(spec: VerifiableSpec) -> SamplingConfig:
    return SamplingConfig(
        max_new_tokens=spec.max_new_tokens,
        batch_size=spec.batch_size,
        seed=spec.seed,
        backend=spec.backend,
        dtype=spec.dtype,
    )


def _conversations(prompts: Sequence[Prompt]) -> list[Messages]:
    return [[{"role": "user", "content": p.text}] for p in prompts]


def evaluate_model(model: PreTrainedModel, tokenizer: Tokenizer, spec: VerifiableSpec) -> Fitness:
    """Greedy held-out pass rate of an already loaded model (in the device and dtype it was loaded in)."""
    prompts = heldout_prompts(spec)
    started = time.monotonic()
    replies = chat(model, tokenizer, _conversations(prompts), _sampling(spec), description="held-out prompts")
    return _fitness(prompts, [rows[0] for rows in replies], spec, started)


def evaluate(model_dir: str | Path, spec: VerifiableSpec) -> Fitness:
    """Held-out pass rate of the model at `model_dir` (a checkpoint directory, hub id or preset name), generated
    through the spec's backend, on the GPU when there is one."""
    prompts = heldout_prompts(spec)
    started = time.monotonic()
    replies = sample_responses(
        str(model_dir), _conversations(prompts), _sampling(spec), description="held-out prompts"
    )
    return _fitness(prompts, [rows[0] for rows in replies], spec, started)


def _fitness(
    prompts: Sequence[Prompt], responses: Sequence[str], spec: VerifiableSpec, started: float
) -> Fitness:
    fitness = score_responses(prompts, responses)
    if spec.generations_path:
        rows = [
            p.to_json() | {"response": r, "passed": bool(fitness.details["per_item"][p.id])}
            for p, r in zip(prompts, responses, strict=True)
        ]
        path = Path(spec.generations_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    details = dict(fitness.details) | {"generation_seconds": round(time.monotonic() - started, 1)}
    return Fitness(fitness.score, fitness.stderr, fitness.n, details)


def _families(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m evaluators.verifiable",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint dir, hub id, or smollm2-135m-instruct / tiny"
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--families", type=_families, default=DEFAULT_FAMILIES, help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-heldout-topics", type=int, default=VerifiableSpec.n_heldout_topics)
    parser.add_argument("--backend", choices=BACKENDS, default=VerifiableSpec.backend, help="generation")
    parser.add_argument("--dtype", choices=DTYPES, default=VerifiableSpec.dtype, help="generation weights")
    build = parser.add_argument_group("training pairs (--build-pairs)")
    build.add_argument("--build-pairs", action="store_true", help="sample and pair training data instead")
    build.add_argument("--n-train-topics", type=int, default=PairBuildConfig.n_train_topics)
    build.add_argument("--n-proxy-topics", type=int, default=PairBuildConfig.n_proxy_topics)
    build.add_argument("--samples-per-prompt", type=int, default=PairBuildConfig.samples_per_prompt)
    build.add_argument("--pairs-per-prompt", type=int, default=PairBuildConfig.pairs_per_prompt)
    build.add_argument("--temperature", type=float, default=PairBuildConfig.temperature)
    build.add_argument("--cache-dir", type=Path, default=None, help="default: $EVOPO_CACHE/verifiable")
    build.add_argument("--rebuild", action="store_true", help="ignore a cached build of the same config")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    if args.build_pairs:
        config = PairBuildConfig(
            model=args.model,
            families=args.families,
            n_train_topics=args.n_train_topics,
            n_proxy_topics=args.n_proxy_topics,
            samples_per_prompt=args.samples_per_prompt,
            pairs_per_prompt=args.pairs_per_prompt,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        pairs = build_pairs(config, args.cache_dir, rebuild=args.rebuild)
        for source in (pairs.train_path, pairs.proxy_path, pairs.directory / "meta.json"):
            shutil.copyfile(source, args.output_dir / source.name)
        print(
            f"{pairs.stats['n_train_pairs']} training pairs -> {args.output_dir / pairs.train_path.name}; "
            f"{pairs.stats['n_proxy_pairs']} proxy pairs -> {args.output_dir / pairs.proxy_path.name}"
        )
        return

    spec = VerifiableSpec(
        families=args.families,
        n_heldout_topics=args.n_heldout_topics,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        generations_path=str(args.output_dir / "generations.jsonl"),
        backend=args.backend,
        dtype=args.dtype,
    )
    fitness = evaluate(args.model, spec)
    print_fitness("verifiable pass rate", fitness, args.output_dir)


if __name__ == "__main__":
    main()
