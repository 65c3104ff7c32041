"""The leaderboard of a run as data: done candidates by the highest fidelity rung they reached, then fitness, each
with its paired difference to DPO at that rung (the same held-out items)."""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.fitness import Fitness, paired_delta
from evo.archive import Archive, Candidate, RungResult
from evo.status import Status

REFERENCE_BASELINE = "dpo"


@dataclass(frozen=True)
class Row:
    rank: int
    id: int
    name: str
    fitness: float
    stderr: float
    delta_vs_dpo: float | None
    delta_stderr: float | None
    generation: int
    proposer: str
    # the highest fidelity rung reached (evo.rungs); None in archives from before rungs
    rung: int | None = None


def _fitness(c: Candidate) -> Fitness:
    return Fitness(c.fitness, c.stderr or 0.0, c.n or 0, c.metrics.get("fitness_details", {}))


def _dpo_at(dpo: Candidate, rungs: dict[int, RungResult], rung: int | None) -> Fitness | None:
    """DPO's result at ``rung`` (its only result in archives from before rungs; None while it is not scored there)."""
    if rung is None or not rungs:
        return _fitness(dpo)
    at = rungs.get(rung)
    return None if at is None else Fitness(at.fitness, at.stderr or 0.0, at.n or 0, {"per_item": at.per_item})


def dpo_baseline(candidates: list[Candidate]) -> Candidate | None:
    """The DPO baseline of generation 0 once it is done: what every delta is measured against."""
    return next(
        (
            c
            for c in candidates
            if c.generation == 0 and c.name == REFERENCE_BASELINE and c.status == Status.DONE
        ),
        None,
    )


def leaderboard(archive: Archive, top: int | None = None) -> tuple[list[Row], dict[str, int]]:
    """The ``top`` done candidates (all when None) with their paired delta vs DPO, and the status counts."""
    done = archive.top(top or 10**9)
    dpo = dpo_baseline(archive.in_generation(0)) or _scored_dpo(archive)
    dpo_rungs = {r.rung: r for r in archive.rung_results(dpo.id)} if dpo is not None else {}
    rows = []
    for rank, c in enumerate(done, start=1):
        delta = delta_se = None
        reference = _dpo_at(dpo, dpo_rungs, c.rung) if dpo is not None else None
        if reference is not None:
            try:
                paired = paired_delta(_fitness(c), reference)
                delta, delta_se = paired.delta, paired.stderr
            except ValueError:  # no per-item scores: fall back to the plain difference
                delta = c.fitness - reference.score
        rows.append(
            Row(
                rank,
                c.id,
                c.name,
                c.fitness,
                c.stderr or 0.0,
                delta,
                delta_se,
                c.generation,
                c.proposer,
                c.rung,
            )
        )
    return rows, archive.status_counts()


def _scored_dpo(archive: Archive) -> Candidate | None:
    """The DPO baseline while it trains at a higher rung: its lower rungs are already scored."""
    for c in archive.in_generation(0):
        if c.name == REFERENCE_BASELINE and c.rung is not None:
            return c
    return None
