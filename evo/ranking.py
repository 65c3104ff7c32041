"""The leaderboard of a run as data: done candidates by the highest fidelity rung they reached, then fitness, each
with its paired difference to the reference baseline at that rung (the same held-out items; DPO unless the run's
``fitness.reference_baseline`` names another; ``Row.delta_vs_dpo`` holds it), and, for the candidates
``evo.confirm`` confirmed, their difference to DPO on fresh seeds and prompts (``confirmed_*``, ``p_value``,
``p_holm``: None where not confirmed; ``confirmed`` is False there)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from evaluators.fitness import Fitness, paired_delta
from evo.archive import Archive, Candidate, RungResult
from evo.confirm_store import read_summaries
from evo.status import Status
from trainer.pipelines.baseline_names import baseline_loss

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
    confirmed_delta: float | None = None
    confirmed_stderr: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    confirmed: bool = False  # True only when p_holm < 0.05 and confirmed_delta > 0
    # the highest fidelity rung reached (evo.rungs); None in archives from before rungs
    rung: int | None = None


def confirmed_cell(row: Row) -> str:
    """The confirmed difference to DPO, its Holm-adjusted p and the verdict; '-' where not confirmed."""
    if row.p_holm is None:
        return "-"
    if row.confirmed_delta is None:
        return "seeds failed"
    verdict = "better" if row.confirmed else "not shown better"
    return f"{row.confirmed_delta:+.4f} +- {row.confirmed_stderr:.4f} p_holm {row.p_holm:.3g} ({verdict})"


def _fitness(c: Candidate) -> Fitness:
    return Fitness(c.fitness, c.stderr or 0.0, c.n or 0, c.metrics.get("fitness_details", {}))


def reference_baseline(candidates: list[Candidate], reference: str, scored: bool = False) -> Candidate | None:
    """The done generation-0 baseline named ``reference``, or else one training the same registry loss (``dpo`` and
    ``sigmoid`` are one baseline). ``scored``: also one still training at a higher rung whose lower rungs are
    scored."""
    baselines = [
        c
        for c in candidates
        if c.generation == 0 and (c.status == Status.DONE or (scored and c.rung is not None))
    ]
    named = next((c for c in baselines if c.name == reference), None)
    if named is not None:
        return named
    try:
        loss = baseline_loss(reference)
    except KeyError:
        return None
    return next((c for c in baselines if loss is not None and c.loss == loss), None)


def _reference_at(base: Candidate, rungs: dict[int, RungResult], rung: int | None) -> Fitness | None:
    """The reference's result at ``rung`` (its only result in archives from before rungs; None while it is not
    scored there)."""
    if rung is None or not rungs:
        return _fitness(base)
    at = rungs.get(rung)
    return None if at is None else Fitness(at.fitness, at.stderr or 0.0, at.n or 0, {"per_item": at.per_item})


def leaderboard(
    archive: Archive, top: int | None = None, reference: str = REFERENCE_BASELINE
) -> tuple[list[Row], dict[str, int]]:
    """The ``top`` done candidates (all when None) with their paired delta vs the ``reference`` baseline (DPO by
    default: ``fitness.reference_baseline``), and the status counts."""
    done = archive.top(top or 10**9)
    generation0 = archive.in_generation(0)
    base = reference_baseline(generation0, reference) or reference_baseline(
        generation0, reference, scored=True
    )
    base_rungs = {r.rung: r for r in archive.rung_results(base.id)} if base is not None else {}
    confirmations = read_summaries(archive.path)
    rows = []
    for rank, c in enumerate(done, start=1):
        delta = delta_se = None
        against = _reference_at(base, base_rungs, c.rung) if base is not None else None
        if against is not None:
            try:
                paired = paired_delta(_fitness(c), against)
                delta, delta_se = paired.delta, paired.stderr
            except ValueError:  # no per-item scores: fall back to the plain difference
                delta = c.fitness - against.score
        row = Row(
            rank,
            c.id,
            c.name,
            c.fitness,
            c.stderr or 0.0,
            delta,
            delta_se,
            c.generation,
            c.proposer,
            rung=c.rung,
        )
        confirmation = confirmations.get(c.id)
        if confirmation is not None:
            row = replace(
                row,
                confirmed_delta=confirmation.delta,
                confirmed_stderr=confirmation.stderr,
                p_value=confirmation.p_value,
                p_holm=confirmation.p_holm,
                confirmed=confirmation.confirmed,
            )
        rows.append(row)
    return rows, archive.status_counts()
