"""Novelty keys for losses: a behavioural fingerprint and a sympy canonical form, both of the traced graph.

The fingerprint evaluates the loss and its gradients with respect to the policy log-probs on a fixed grid of
inputs (two betas, scaled margins from strongly wrong to strongly right, log-probs like those of training) in
float32, the dtype training uses, rounds every number to `SIGNIFICANT_DIGITS` significant digits (values
below `RELATIVE_ZERO` of their column's largest, float32 noise, count as zero) and hashes the result: losses that compute the same function in training
collide however they are written, and a loss that differs only in float64 is a clone. It runs the loss, so
the sandbox computes it inside its child, on the callable rebuilt from the graph.

The canonical form translates the graph to sympy (`sandbox.graph_sympy`), rewrites it over the log-ratio margin
and beta, and expands it: readable in the archive, but only for graphs the translator models (None otherwise).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import sympy
import torch

from sandbox.graph import LossGraph
from sandbox.graph_sympy import (
    MARGIN,
    POLICY_CHOSEN,
    POLICY_REJECTED,
    REFERENCE_CHOSEN,
    REFERENCE_REJECTED,
    to_sympy,
)

SIGNIFICANT_DIGITS = 3
ZERO_TOLERANCE = 1e-7
# Values below this fraction of their column's largest magnitude are float32 noise and count as zero.
RELATIVE_ZERO = 1e-4
FINGERPRINT_DTYPE = torch.float32
GRID_BETAS = (0.1, 0.7)
# beta * margin values: generic numbers, so that no point sits on a kink (relu at 1) or a tie.
GRID_SCALED_MARGINS = (-7.3, -3.1, -1.7, -0.93, -0.41, -0.13, 0.17, 0.37, 0.83, 1.9, 3.3, 6.1)
MAX_CANONICAL_CHARS = 4000


def grid_inputs(beta: float) -> tuple[torch.Tensor, ...]:
    """Deterministic (policy_chosen, policy_rejected, reference_chosen, reference_rejected) in float32."""
    rows = range(len(GRID_SCALED_MARGINS))
    margin = torch.tensor([z / beta for z in GRID_SCALED_MARGINS], dtype=torch.float64)
    ref_chosen = torch.tensor([-137.3 - 41.1 * math.sin(i + 1.0) for i in rows], dtype=torch.float64)
    ref_rejected = torch.tensor([-151.7 - 39.7 * math.cos(i + 2.0) for i in rows], dtype=torch.float64)
    shift = torch.tensor([3.9 * math.sin(2.3 * i + 0.5) for i in rows], dtype=torch.float64) - margin.abs()
    tensors = (ref_chosen + shift + margin / 2, ref_rejected + shift - margin / 2, ref_chosen, ref_rejected)
    return tuple(t.to(FINGERPRINT_DTYPE) for t in tensors)


def _quantize(value: float, zero: float = ZERO_TOLERANCE) -> str:
    if not math.isfinite(value):
        return repr(value)
    if abs(value) < zero:
        return "0"
    return f"{value:.{SIGNIFICANT_DIGITS - 1}e}"


def _quantize_column(values: list[float]) -> str:
    finite = [abs(v) for v in values if math.isfinite(v)]
    zero = max(ZERO_TOLERANCE, RELATIVE_ZERO * max(finite, default=0.0))
    return ",".join(_quantize(v, zero) for v in values)


def fingerprint(loss_fn: Callable[..., torch.Tensor]) -> str:
    """Hash of the rounded float32 losses and policy gradients on the fixed grid (16 hex digits)."""
    digest = hashlib.sha256()
    for beta in GRID_BETAS:
        pol_chosen, pol_rejected, ref_chosen, ref_rejected = grid_inputs(beta)
        pol_chosen.requires_grad_(True)
        pol_rejected.requires_grad_(True)
        loss = loss_fn(pol_chosen, pol_rejected, ref_chosen, ref_rejected, beta)
        grads = torch.autograd.grad(loss.sum(), [pol_chosen, pol_rejected], allow_unused=True)
        columns = [loss.detach()] + [torch.zeros_like(loss) if g is None else g for g in grads]
        for column in columns:
            digest.update(_quantize_column(column.double().tolist()).encode())
            digest.update(b";")
    return digest.hexdigest()[:16]


def canonical_form(graph: LossGraph) -> str | None:
    """The loss as an expanded sympy expression over `margin`, `beta` and any input it uses beyond the margin.

    Returns None when the graph cannot be translated. sympy can be slow on adversarial expressions: the
    sandbox computes this in its child under a time budget.
    """
    try:
        expr = to_sympy(graph)
        expr = expr.subs(POLICY_CHOSEN, MARGIN + POLICY_REJECTED + REFERENCE_CHOSEN - REFERENCE_REJECTED)
        text = str(sympy.expand(expr, force=True))
    except Exception:  # the translator and sympy raise many types on graphs they cannot model
        return None
    return text if len(text) <= MAX_CANONICAL_CHARS else None
