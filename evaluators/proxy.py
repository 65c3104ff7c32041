"""Proxy fitness on held-out preference pairs: cheap enough to run every few hundred training steps.

For each pair, with summed completion log-probs of the policy (pc, pr) and of the reference model (rc, rr):
reward margin = beta * ((pc - rc) - (pr - rr)). Score = preference accuracy (share of pairs with a positive
margin) with its binomial standard error; details carry the mean reward margin and the drift of the chosen
(and rejected) log-probs from the reference, whose fall signals likelihood displacement. Log-probs come from
`trainer.logprobs` (tokenized as TRL's DPO trainer does); the reference's are computed once per (reference, data
file, settings) in a process and reused.

    python -m evaluators.proxy --model CHECKPOINT --data heldout_pairs.jsonl --output-dir DIR
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from evaluators.cli import print_fitness
from evaluators.fitness import Fitness, mean_stderr, proportion_stderr
from trainer.data import normalize_rows, read_rows
from trainer.generation import load_model
from trainer.logprobs import completion_logps
from trainer.models import EMBEDDED


@dataclass(frozen=True)
class ProxySpec:
    """Held-out pairs (any format `trainer.data` reads) and the reference model the margins are measured against."""

    data: str
    reference: str = EMBEDDED
    beta: float = 0.1
    batch_size: int = 8
    max_pairs: int | None = None
    max_length: int = 512  # prompt + completion tokens; longer sequences keep their first tokens
    # summed log-prob differences: bf16 weights blur them by ~0.1 nat per sequence, so float32 unless asked
    dtype: str = "float32"


def _pair_logps(
    model: PreTrainedModel, tokenizer: Tokenizer, rows: Sequence[dict], spec: ProxySpec
) -> torch.Tensor:
    """(n, 2) summed log-probs of the chosen and rejected completions."""
    prompts = [r["prompt"] for r in rows]
    chosen = completion_logps(
        model, tokenizer, prompts, [r["chosen"] for r in rows], spec.batch_size, spec.max_length, "chosen"
    )
    rejected = completion_logps(
        model, tokenizer, prompts, [r["rejected"] for r in rows], spec.batch_size, spec.max_length, "rejected"
    )
    return torch.stack([torch.tensor(chosen), torch.tensor(rejected)], dim=1)


def load_pairs(spec: ProxySpec) -> list[dict]:
    return normalize_rows(read_rows(spec.data))[1][: spec.max_pairs]


@functools.lru_cache(maxsize=4)
def reference_logps(spec: ProxySpec, data_mtime_ns: int) -> torch.Tensor:
    """The reference model's (n, 2) log-probs, cached per spec and data file version."""
    model, tokenizer = load_model(spec.reference, spec.dtype)
    return _pair_logps(model, tokenizer, load_pairs(spec), spec)


def proxy_fitness(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> Fitness:
    """Preference accuracy, reward margins and log-prob drift from (n, 2) policy and reference log-probs."""
    ratios = policy - reference
    margins = (beta * (ratios[:, 0] - ratios[:, 1])).tolist()
    accuracy, stderr = proportion_stderr(sum(m > 0 for m in margins), len(margins))
    mean_margin, margin_stderr = mean_stderr(margins)
    details = {
        "mean_reward_margin": mean_margin,
        "reward_margin_stderr": margin_stderr,
        "chosen_logp_drift": ratios[:, 0].mean().item(),
        "rejected_logp_drift": ratios[:, 1].mean().item(),
        "per_item": {str(i): float(m > 0) for i, m in enumerate(margins)},
    }
    return Fitness(accuracy, stderr, len(margins), details)


def evaluate_model(model: PreTrainedModel, tokenizer: Tokenizer, spec: ProxySpec) -> Fitness:
    """Proxy fitness of an already loaded policy (e.g. in the middle of training)."""
    was_training = model.training
    model.eval()
    try:
        policy = _pair_logps(model, tokenizer, load_pairs(spec), spec)
    finally:
        model.train(was_training)
    return proxy_fitness(policy, reference_logps(spec, Path(spec.data).stat().st_mtime_ns), spec.beta)


def evaluate(model_dir: str | Path, spec: ProxySpec) -> Fitness:
    """Proxy fitness of the model at `model_dir` (checkpoint directory, hub id or preset name)."""
    model, tokenizer = load_model(str(model_dir), spec.dtype)
    return evaluate_model(model, tokenizer, spec)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m evaluators.proxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="held-out preference pairs (.jsonl or .json)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--reference", default=EMBEDDED)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=None)
    args = parser.parse_args(argv)
    spec = ProxySpec(
        data=args.data,
        reference=args.reference,
        beta=args.beta,
        batch_size=args.batch_size,
        max_pairs=args.max_pairs,
    )
    fitness = evaluate(args.model, spec)
    print_fitness("proxy preference accuracy", fitness, args.output_dir)
    print(
        f"mean reward margin {fitness.details['mean_reward_margin']:.4f}, "
        f"chosen log-prob drift {fitness.details['chosen_logp_drift']:.3f}"
    )


if __name__ == "__main__":
    main()
