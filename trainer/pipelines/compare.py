"""The fixed methods side by side on the embedded default task: held-out verifiable pass rate after one
iteration of SPIN, SPA and DPO-on-AEPO-pairs next to plain DPO and the untrained policy, with standard errors.

    python -m trainer.pipelines.compare --output-dir runs/compare [--model smollm2-135m-instruct]
        [--methods dpo,spin,spa,aepo_dpo] [--num-train-epochs 3] [--method-options '{"iterations": 2}']
        [--n-heldout-topics 30] [--pairs FILE]

The training flags are ``trainer.config.TrainingConfig``'s, with its defaults: the default search's training,
so that these numbers sit next to the DPO baseline of a default search. ``--seed`` also seeds the pairs, the
held-out prompts and the verifiable annotation. ``--method-options`` overrides ``MethodOptions`` (iterations,
sampling, annotation).

Every method starts from the same policy and the same West-of-N training pairs (built and cached by
``evaluators.verifiable_data``, or ``--pairs``) and is scored on the same held-out prompts, so each is also
compared with DPO by the paired difference of per-prompt pass/fail. Heavy: on a 2-core CPU each method
trains for minutes and samples for minutes. Everything is resumable: finished methods and evaluations are
kept in ``--output-dir`` and skipped on a rerun.

Outputs: ``DIR/<method>/`` (the baseline's artefacts and ``fitness.json``), ``DIR/compare.json`` (all
scores)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluators.fitness import Fitness, paired_delta
from evaluators.verifiable import VerifiableSpec, evaluate
from evaluators.verifiable_data import PairBuildConfig, build_pairs
from trainer.arguments import add_arguments, from_arguments
from trainer.config import LAUNCH_FIELDS, TrainingConfig
from trainer.pipelines.baselines import BASELINES, MethodOptions, run_baseline
from trainer.pipelines.common import setup_logging
from trainer.pipelines.state import write_atomic

log = logging.getLogger(__name__)
BASE = "base"
DEFAULT_METHODS = ("dpo", "spin", "spa", "aepo_dpo")


@dataclass(frozen=True)
class MethodScore:
    method: str
    checkpoint: str
    score: float
    stderr: float
    n: int
    delta_vs_dpo: float | None
    delta_vs_dpo_stderr: float | None
    delta_vs_base: float
    delta_vs_base_stderr: float


def scored(directory: Path, checkpoint: str, spec: VerifiableSpec) -> Fitness:
    """The checkpoint's verifiable fitness, computed once and kept in ``directory/fitness.json``."""
    path = directory / "fitness.json"
    if path.exists():
        return Fitness.from_json(json.loads(path.read_text()))
    fitness = evaluate(checkpoint, spec)
    fitness.write(path)
    return fitness


def compare(
    output_dir: Path,
    methods: Sequence[str],
    training: TrainingConfig,
    options: MethodOptions,
    train_path: Path,
    spec: VerifiableSpec,
) -> list[MethodScore]:
    """Train every method from ``training.model`` on ``train_path`` (resumably), score it, and compare it with
    DPO and the untrained policy."""
    checkpoints = {BASE: training.model}
    fitness = {BASE: scored(output_dir / BASE, training.model, spec)}
    for method in methods:
        checkpoints[method] = run_baseline(
            method, training, str(train_path), str(output_dir / method), options
        )
        fitness[method] = scored(output_dir / method, checkpoints[method], spec)
    results = []
    for method in [BASE, *methods]:
        vs_dpo = paired_delta(fitness[method], fitness["dpo"]) if "dpo" in fitness else None
        vs_base = paired_delta(fitness[method], fitness[BASE])
        own = fitness[method]
        results.append(
            MethodScore(
                method=method,
                checkpoint=checkpoints[method],
                score=own.score,
                stderr=own.stderr,
                n=own.n,
                delta_vs_dpo=vs_dpo.delta if vs_dpo else None,
                delta_vs_dpo_stderr=vs_dpo.stderr if vs_dpo else None,
                delta_vs_base=vs_base.delta,
                delta_vs_base_stderr=vs_base.stderr,
            )
        )
    return results


def render(results: Sequence[MethodScore]) -> Table:
    table = Table(title="held-out verifiable pass rate")
    for column in ("method", "pass rate", "vs DPO (paired)", "vs untrained (paired)"):
        table.add_column(column)
    for r in results:
        vs_dpo = "" if r.delta_vs_dpo is None else f"{r.delta_vs_dpo:+.3f} ± {r.delta_vs_dpo_stderr:.3f}"
        table.add_row(
            r.method,
            f"{r.score:.3f} ± {r.stderr:.3f} (n={r.n})",
            vs_dpo,
            f"{r.delta_vs_base:+.3f} ± {r.delta_vs_base_stderr:.3f}",
        )
    return table


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; known: {', '.join(sorted(BASELINES))}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.pipelines.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument(
        "--methods", type=_methods, default=DEFAULT_METHODS, help="comma-separated baseline names"
    )
    parser.add_argument(
        "--method-options",
        type=json.loads,
        default={},
        help="JSON object of MethodOptions fields (verifiable_seed defaults to --seed)",
    )
    parser.add_argument(
        "--pairs", type=Path, default=None, help="training pairs (default: build them, cached)"
    )
    parser.add_argument("--n-train-topics", type=int, default=PairBuildConfig.n_train_topics)
    parser.add_argument("--n-heldout-topics", type=int, default=VerifiableSpec.n_heldout_topics)
    parser.add_argument(
        "--max-new-tokens", type=int, default=VerifiableSpec.max_new_tokens, help="evaluation"
    )
    add_arguments(parser, TrainingConfig(), omit=LAUNCH_FIELDS, title="training")
    args = parser.parse_args(argv)
    setup_logging()
    training = from_arguments(TrainingConfig(), args)
    try:
        options = MethodOptions.from_dict({"verifiable_seed": training.seed} | args.method_options)
    except (ValueError, TypeError) as err:
        parser.error(f"--method-options: {err}")
    spec = VerifiableSpec(
        n_heldout_topics=args.n_heldout_topics, seed=training.seed, max_new_tokens=args.max_new_tokens
    )
    if args.pairs is not None:
        train_path, pairs = args.pairs, {"path": str(args.pairs)}
    else:
        config = PairBuildConfig(model=training.model, n_train_topics=args.n_train_topics, seed=training.seed)
        train_path, pairs = build_pairs(config).train_path, asdict(config)
    log.info("training pairs: %s", train_path)
    results = compare(args.output_dir, args.methods, training, options, train_path, spec)
    write_atomic(
        args.output_dir / "compare.json",
        json.dumps(
            {
                "training": asdict(training),
                "method_options": asdict(options),
                "pairs": pairs,
                "heldout": asdict(spec),
                "results": [asdict(r) for r in results],
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    Console().print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
