"""Confirm a run's best candidates against DPO on fresh seeds and fresh prompts.

    python -m evo.confirm RUN_DIR [--top K] [--seeds S]

The top K done candidates of the run's archive (by search fitness; DPO itself excluded) and the DPO baseline are
retrained with S fresh training seeds (``confirm.seed_base + s``: the data order, new weights, and a fresh draw of
the training pairs when ``data.max_train_pairs`` caps them) from their stored graphs (registry losses by name,
pipelines by procedure), each through ``evo.job.run_job``, and scored on the confirmation held-out split
(``evo.confirm_data``), disjoint from the prompts the search selected with. Each candidate's result is its paired
difference to DPO over seeds x items with a cluster-robust standard error, a one-sided p-value and the Holm-adjusted
p over the K (``evo.stats``); ``confirmed`` means p_holm < 0.05 and a positive delta. Everything is recorded in the
archive (``evo.confirm_store``) as it finishes, so a killed confirmation resumes without retraining finished seeds.
The jobs run one after another in this process. ``--top`` and ``--seeds`` default to the run's ``confirm`` config.

Exit status: 0 when every seed ran (whatever the verdict), 1 when a seed failed (recorded with its reason), 2 on
bad input (no archive, no DPO baseline, no confirmation split)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from evo.archive import Archive, Candidate
from evo.config import FitnessConfig, SearchConfig, load_config
from evo.confirm_data import ConfirmationSplit, confirmation_split, prompts_of, seed_train_path
from evo.confirm_store import Confirmation, ConfirmStore, SeedRun
from evo.job import CandidateJob, JobResult, run_job
from evo.ranking import reference_baseline
from evo.stats import holm, paired_over_seeds
from evo.status import Status
from trainer.models import cache_root

Runner = Callable[[CandidateJob], JobResult]


def select(archive: Archive, top_k: int) -> tuple[Candidate, list[Candidate]]:
    """DPO and the top ``top_k`` done candidates other than it; raises ``ValueError`` without a done DPO."""
    dpo = reference_baseline(archive.in_generation(0), "dpo")
    if dpo is None:
        raise ValueError("the run has no done DPO baseline to confirm against (baselines must include dpo)")
    return dpo, [c for c in archive.top(top_k + 1) if c.id != dpo.id][:top_k]


def fresh_seeds(config: SearchConfig, seeds: int) -> list[int]:
    chosen = [config.confirm.seed_base + s for s in range(seeds)]
    if config.training.seed in chosen:
        raise ValueError(
            f"confirm.seed_base {config.confirm.seed_base}: seed {config.training.seed} is the search's "
            "own training seed, not a fresh one"
        )
    return chosen


def _job(
    config: SearchConfig,
    run_dir: Path,
    candidate: Candidate,
    seed: int,
    train_path: str,
    split_fitness: FitnessConfig,
    heldout_path: str | None,
) -> CandidateJob:
    return CandidateJob(
        candidate_id=candidate.id,
        name=candidate.name,
        work_dir=str(run_dir / "confirm" / f"{candidate.id}-seed{seed}"),
        train_path=train_path,
        heldout_path=heldout_path,
        training=dataclasses.replace(config.training, seed=seed),
        fitness=split_fitness,
        graph=None if candidate.loss else candidate.graph,
        loss=candidate.loss,
        pipeline=candidate.pipeline,
        ref_cache_dir=str(cache_root() / "refcache"),
    )


def summarize(
    dpo: Candidate, candidates: list[Candidate], seeds: list[int], store: ConfirmStore
) -> list[Confirmation]:
    """Each candidate's paired difference to DPO and the Holm adjustment over all of them (a candidate whose
    seeds did not all finish counts with p = 1, so the family stays the K asked for)."""
    reference = [store.done(dpo.id, seed) for seed in seeds]
    partial = []
    for candidate in candidates:
        runs = [store.done(candidate.id, seed) for seed in seeds]
        missing = [seed for seed, run in zip(seeds, runs, strict=True) if run is None] + [
            seed for seed, run in zip(seeds, reference, strict=True) if run is None
        ]
        if missing:
            partial.append((candidate, None, f"no finished confirmation for seed(s) {sorted(set(missing))}"))
            continue
        result = paired_over_seeds([r.per_item for r in runs], [r.per_item for r in reference])
        partial.append((candidate, result, None))
    adjusted = holm([1.0 if result is None else result.p_value for _, result, _ in partial])
    return [
        Confirmation(
            candidate_id=candidate.id,
            reference_id=dpo.id,
            delta=None if result is None else result.delta,
            stderr=None if result is None else result.stderr,
            p_value=None if result is None else result.p_value,
            p_holm=p_holm,
            n_seeds=0 if result is None else result.n_seeds,
            n_items=0 if result is None else result.n_items,
            family_size=len(candidates),
            reason=reason,
        )
        for (candidate, result, reason), p_holm in zip(partial, adjusted, strict=True)
    ]


def confirm_run(
    config: SearchConfig,
    run_dir: Path,
    top_k: int,
    seeds: int,
    runner: Runner = run_job,
    say: Callable[[str], None] = print,
) -> list[Confirmation]:
    """Retrain DPO and the top ``top_k`` with ``seeds`` fresh seeds (skipping seeds already done), record every
    result, and write and return the summary."""
    if top_k < 1 or seeds < 1:
        raise ValueError(f"--top and --seeds must be at least 1, got {top_k} and {seeds}")
    split = confirmation_split(config, run_dir)
    archive = Archive(run_dir / "archive.sqlite")
    store = ConfirmStore(archive.path)
    try:
        dpo, candidates = select(archive, top_k)
        chosen = fresh_seeds(config, seeds)
        say(
            f"confirming {', '.join(f'{c.id} ({c.name})' for c in candidates) or 'no candidate'} against DPO "
            f"({dpo.id}) with seeds {chosen} on {_split_size(split)} fresh held-out prompts"
        )
        for seed in chosen:
            train_path = seed_train_path(config, run_dir, seed)
            for candidate in (dpo, *candidates):
                if store.done(candidate.id, seed) is not None:
                    continue
                say(f"confirm: candidate {candidate.id} ({candidate.name}), seed {seed}: training")
                result = runner(
                    _job(config, run_dir, candidate, seed, train_path, split.fitness, split.heldout_path)
                )
                store.put(_seed_run(result, seed, train_path))
                say(
                    f"confirm: candidate {candidate.id} seed {seed}: {result.status}"
                    + (
                        f" {result.fitness:.4f} +- {result.stderr:.4f}"
                        if result.status == Status.DONE
                        else f" ({(result.reason or '').splitlines()[0]})"
                    )
                )
        summaries = summarize(dpo, candidates, chosen, store)
        store.set_summaries(summaries)
        return summaries
    finally:
        store.close()
        archive.close()


def _split_size(split: ConfirmationSplit) -> int:
    return len(prompts_of(split.fitness, split.heldout_path))


def _seed_run(result: JobResult, seed: int, train_path: str) -> SeedRun:
    details = result.metrics.get("fitness_details", {}) if result.status == Status.DONE else {}
    return SeedRun(
        candidate_id=result.candidate_id,
        seed=seed,
        status=result.status,
        reason=result.reason,
        fitness=result.fitness,
        stderr=result.stderr,
        n=result.n,
        per_item=dict(details.get("per_item", {})),
        train_path=train_path,
        timings=result.timings,
    )


def describe(summary: Confirmation) -> str:
    if summary.delta is None:
        return f"candidate {summary.candidate_id}: not confirmed ({summary.reason}); p_holm 1"
    verdict = "CONFIRMED better than DPO" if summary.confirmed else "not confirmed"
    return (
        f"candidate {summary.candidate_id}: delta vs DPO {summary.delta:+.4f} +- {summary.stderr:.4f} over "
        f"{summary.n_seeds} seeds x {summary.n_items} items, p {summary.p_value:.4g} (one-sided), p_holm "
        f"{summary.p_holm:.4g} (K={summary.family_size}): {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evo.confirm", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument(
        "--top", type=int, help="how many candidates to confirm (default: the run's confirm.top_k)"
    )
    parser.add_argument(
        "--seeds", type=int, help="fresh seeds per candidate (default: the run's confirm.seeds)"
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "archive.sqlite").exists() or not (run_dir / "config.yaml").exists():
        print(f"{run_dir}: no run there (archive.sqlite and config.yaml)", file=sys.stderr)
        return 2
    config = load_config(run_dir / "config.yaml")
    top_k = config.confirm.top_k if args.top is None else args.top
    seeds = config.confirm.seeds if args.seeds is None else args.seeds
    try:
        summaries = confirm_run(config, run_dir, top_k, seeds)
    except ValueError as err:
        print(f"cannot confirm {run_dir}: {err}", file=sys.stderr)
        return 2
    for summary in summaries:
        print(describe(summary))
    return 1 if any(s.delta is None for s in summaries) else 0


if __name__ == "__main__":
    raise SystemExit(main())
