"""The result type every evaluator returns, and the statistics shared by them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Fitness:
    """A scalar fitness with its standard error over `n` items; `details` is JSON-serializable evaluator output.

    Evaluators that score items one by one put them in `details["per_item"]` (item id -> score), so that two
    models scored on the same items can be compared by their paired difference (`paired_delta`).
    """

    score: float
    stderr: float
    n: int
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "stderr": self.stderr, "n": self.n, "details": dict(self.details)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fitness:
        return cls(float(data["score"]), float(data["stderr"]), int(data["n"]), dict(data.get("details", {})))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=True) + "\n")


class FitnessUnavailable(RuntimeError):
    """An evaluator cannot compute its score with what this machine has (a missing file or key); raised before
    any generation, with what is missing and the option that supplies it."""


@dataclass(frozen=True)
class PairedDelta:
    """Mean of (a - b) over the items both models were scored on, with the standard error of that mean."""

    delta: float
    stderr: float
    n: int


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Sample mean and its standard error (0 for fewer than two values; NaN mean for none)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def proportion_stderr(successes: int, n: int) -> tuple[float, float]:
    """A pass rate and its binomial standard error sqrt(p(1-p)/n)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    return p, math.sqrt(p * (1 - p) / n)


def paired_delta(a: Fitness, b: Fitness) -> PairedDelta:
    """Paired difference a - b over the shared items of `details["per_item"]`."""
    items_a, items_b = a.details.get("per_item", {}), b.details.get("per_item", {})
    shared = sorted(set(items_a) & set(items_b))
    if not shared:
        raise ValueError("the two results share no scored items (details['per_item'])")
    delta, stderr = mean_stderr([float(items_a[k]) - float(items_b[k]) for k in shared])
    return PairedDelta(delta, stderr, len(shared))
