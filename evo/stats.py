"""The statistics of a confirmation: a candidate's paired difference to DPO over seeds x prompts, its standard
error, a one-sided p-value, and Holm's adjustment over the K candidates confirmed together.

Cell (s, i) holds d = candidate - DPO on held-out item i, both trained with fresh seed s (the same data order and
pairs), so seed and item effects shared by the two cancel. The delta is the mean over all cells. Its standard error
is two-way cluster-robust (Cameron, Gelbach and Miller 2011): V = V_item + V_seed - V_cell, where V_item is the
variance of the mean of the per-item averages over seeds (items are clusters: an item's cells share its
difficulty), V_seed the same over the per-seed averages (a seed's cells share one training run), and V_cell the
plain variance of the mean over cells; V is floored at max(V_item, V_seed) so it is never below either one-way
estimate. The p-value is one-sided (H1: the candidate beats DPO) from Student's t with (number of items - 1)
degrees of freedom."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class SeedPromptDelta:
    """The candidate's paired difference to DPO over ``n_seeds`` x ``n_items`` cells."""

    delta: float
    stderr: float
    p_value: float  # one-sided: P(T >= delta / stderr) under "no better than DPO"
    n_seeds: int
    n_items: int


def _variance_of_mean(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return sum((v - mean) ** 2 for v in values) / (n - 1) / n


def paired_over_seeds(
    candidate: Sequence[Mapping[str, float]], dpo: Sequence[Mapping[str, float]]
) -> SeedPromptDelta:
    """Per-seed ``per_item`` scores of the candidate and of DPO, seed s of one paired with seed s of the other,
    over the items every run scored."""
    if len(candidate) != len(dpo) or not candidate:
        raise ValueError(
            f"need the same number (>= 1) of seeds for both, got {len(candidate)} and {len(dpo)}"
        )
    items = sorted(set.intersection(*(set(run) for run in (*candidate, *dpo))))
    if not items:
        raise ValueError("the runs share no scored items (per_item)")
    cells = [[float(c[i]) - float(d[i]) for i in items] for c, d in zip(candidate, dpo, strict=True)]
    n_seeds, n_items = len(cells), len(items)
    flat = [v for row in cells for v in row]
    delta = sum(flat) / len(flat)
    item_means = [sum(row[j] for row in cells) / n_seeds for j in range(n_items)]
    seed_means = [sum(row) / n_items for row in cells]
    v_item, v_seed = _variance_of_mean(item_means), _variance_of_mean(seed_means)
    variance = max(v_item + v_seed - _variance_of_mean(flat), v_item, v_seed)
    stderr = math.sqrt(variance)
    return SeedPromptDelta(delta, stderr, one_sided_p(delta, stderr, n_items - 1), n_seeds, n_items)


def one_sided_p(delta: float, stderr: float, dof: int) -> float:
    """P(T >= delta / stderr) for Student's t with ``dof`` degrees of freedom; with no spread (stderr 0) or no
    degrees of freedom the evidence is all or nothing: 0 for a positive delta, else 1."""
    if dof < 1:
        return 1.0
    if stderr <= 0:
        return 0.0 if delta > 0 else 1.0
    return float(stats.t.sf(delta / stderr, dof))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment, in the input's order: the i-th smallest p times (m - i + 1), made monotone
    and capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda k: p_values[k])
    adjusted = [0.0] * m
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[k]))
        adjusted[k] = running
    return adjusted
