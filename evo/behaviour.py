"""Behaviour-level dedup: does a candidate train like a loss already in the archive?

Two losses that differ in value can still train alike. What a sequence-level loss does to the model is its
per-pair gradient weights, d loss / d policy log-prob of the chosen and of the rejected completion, and Adam removes
their overall scale. ``gradient_weights`` evaluates them on a fixed probe: every (chosen, rejected) policy
log-ratio on a grid that spans the margins a run moves through (``beta`` x margin from -8 to 8 at the default beta)
around fixed reference log-probs and completion lengths (the reference-free losses see the same probe), so the
result depends on the loss alone. ``cosine`` compares two weight vectors after removing the scale; a positive
rescaling of DPO has cosine 1 with DPO, hinge's step weights do not. ``outcome_agreement`` is the share of shared
held-out items two candidates got the same score on at one rung."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sandbox import GraphError, build_loss

_GRID = torch.linspace(-40.0, 40.0, 9, dtype=torch.float64)  # policy - reference log-ratio, nats
_REFERENCE = (-60.0, -70.0)  # summed reference log-probs of the chosen and the rejected completion
_LENGTHS = (24.0, 28.0)


@dataclass(frozen=True)
class BehaviourMatch:
    original_id: int
    reason: str


def _probe() -> dict[str, torch.Tensor]:
    chosen, rejected = torch.meshgrid(_GRID, _GRID, indexing="ij")
    n = chosen.numel()
    return {
        "policy_chosen_logps": (_REFERENCE[0] + chosen.reshape(-1)).clone().requires_grad_(True),
        "policy_rejected_logps": (_REFERENCE[1] + rejected.reshape(-1)).clone().requires_grad_(True),
        "reference_chosen_logps": torch.full((n,), _REFERENCE[0], dtype=torch.float64),
        "reference_rejected_logps": torch.full((n,), _REFERENCE[1], dtype=torch.float64),
        "chosen_lengths": torch.full((n,), _LENGTHS[0], dtype=torch.float64),
        "rejected_lengths": torch.full((n,), _LENGTHS[1], dtype=torch.float64),
    }


def gradient_weights(graph_json: str, beta: float) -> torch.Tensor | None:
    """The loss's per-pair gradient weights on the probe (chosen then rejected), or None when the graph cannot give
    finite gradients there (then nothing is called its duplicate)."""
    try:
        loss = build_loss(graph_json)
    except GraphError:
        return None
    inputs = _probe()
    optional = {k: v for k, v in inputs.items() if k in loss.graph.inputs and k.endswith("_lengths")}
    required = [
        inputs[role] for role in loss.graph.inputs if not role.endswith("_lengths") and role != "beta"
    ]
    try:
        value = loss(*required, beta, **optional)
        chosen, rejected = torch.autograd.grad(
            value.sum(), [inputs["policy_chosen_logps"], inputs["policy_rejected_logps"]], allow_unused=True
        )
    except (RuntimeError, TypeError, ValueError):
        return None
    parts = [
        g if g is not None else torch.zeros_like(inputs["policy_chosen_logps"]) for g in (chosen, rejected)
    ]
    weights = torch.cat(parts).detach()
    return weights if bool(torch.isfinite(weights).all()) else None


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two weight vectors: 1 when one is a positive multiple of the other."""
    norms = float(a.norm() * b.norm())
    return float(a @ b) / norms if norms > 0 else (1.0 if float(a.norm()) == float(b.norm()) == 0 else 0.0)


def outcome_agreement(a: dict, b: dict) -> float:
    """Share of the items both were scored on with the same score (NaN when none are shared)."""
    shared = set(a) & set(b)
    if not shared:
        return math.nan
    return sum(float(a[k]) == float(b[k]) for k in shared) / len(shared)


class BehaviourIndex:
    """Gradient weights of the archive's candidates, computed once per candidate from its stored graph."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self._weights: dict[int, torch.Tensor | None] = {}

    def weights(self, candidate_id: int, graph_json: str | None) -> torch.Tensor | None:
        if graph_json is None:
            return None
        if candidate_id not in self._weights:
            self._weights[candidate_id] = gradient_weights(graph_json, self.beta)
        return self._weights[candidate_id]

    def same_gradients(
        self, candidate_id: int, graph_json: str | None, others: list, threshold: float
    ) -> BehaviourMatch | None:
        """The first of ``others`` (archive candidates) whose weights match up to scale (cosine >= threshold)."""
        mine = self.weights(candidate_id, graph_json)
        if mine is None:
            return None
        for other in others:
            theirs = self.weights(other.id, other.graph)
            if other.id == candidate_id or theirs is None:
                continue
            similarity = cosine(mine, theirs)
            if similarity >= threshold:
                return BehaviourMatch(
                    other.id,
                    f"trains like candidate {other.id} ({other.name}): per-pair gradient weights equal up to scale "
                    f"(cosine {similarity:.6f} >= {threshold})",
                )
        return None
