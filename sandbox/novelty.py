"""Novelty keys for candidate losses: a behavioural fingerprint and a sympy canonical form.

The fingerprint evaluates the loss and its gradients with respect to the policy log-probs on a fixed grid of
inputs (two betas, margins from strongly wrong to strongly right) in float64, rounds every number to
`SIGNIFICANT_DIGITS` significant digits (values below `ZERO_TOLERANCE` count as zero) and hashes the result:
losses that compute the same function collide however they are written. It runs the loss, so the sandbox
computes it inside its child process.

The canonical form translates the source to sympy (see `sandbox.symbolic`), rewrites it over the log-ratio
margin and beta, and expands it: cheaper than a fingerprint to compare, readable in the archive, but only for
losses the translator models (None otherwise).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import sympy
import torch

from sandbox.symbolic import (
    MARGIN,
    POLICY_CHOSEN,
    POLICY_REJECTED,
    REFERENCE_CHOSEN,
    REFERENCE_REJECTED,
    to_sympy,
)

SIGNIFICANT_DIGITS = 4
ZERO_TOLERANCE = 1e-9
GRID_BETAS = (0.1, 0.7)
# beta * margin values: generic numbers, so that no point sits on a kink (relu at 1) or a tie.
GRID_SCALED_MARGINS = (-7.3, -3.1, -1.7, -0.93, -0.41, -0.13, 0.17, 0.37, 0.83, 1.9, 3.3, 6.1)
MAX_CANONICAL_CHARS = 4000


def grid_inputs(beta: float) -> tuple[torch.Tensor, ...]:
    """Deterministic float64 (policy_chosen, policy_rejected, reference_chosen, reference_rejected) inputs."""
    rows = range(len(GRID_SCALED_MARGINS))
    margin = torch.tensor([z / beta for z in GRID_SCALED_MARGINS], dtype=torch.float64)
    ref_chosen = torch.tensor([-37.3 - 11.1 * math.sin(i + 1.0) for i in rows], dtype=torch.float64)
    ref_rejected = torch.tensor([-41.7 - 9.7 * math.cos(i + 2.0) for i in rows], dtype=torch.float64)
    shift = torch.tensor([3.9 * math.sin(2.3 * i + 0.5) for i in rows], dtype=torch.float64)
    return ref_chosen + shift + margin / 2, ref_rejected + shift - margin / 2, ref_chosen, ref_rejected


def _quantize(value: float) -> str:
    if not math.isfinite(value):
        return repr(value)
    if abs(value) < ZERO_TOLERANCE:
        return "0"
    return f"{value:.{SIGNIFICANT_DIGITS - 1}e}"


def fingerprint(loss_fn: Callable[..., torch.Tensor]) -> str:
    """Hash of the rounded losses and policy gradients on the fixed grid (16 hex digits)."""
    digest = hashlib.sha256()
    for beta in GRID_BETAS:
        pol_chosen, pol_rejected, ref_chosen, ref_rejected = grid_inputs(beta)
        pol_chosen.requires_grad_(True)
        pol_rejected.requires_grad_(True)
        loss = loss_fn(pol_chosen, pol_rejected, ref_chosen, ref_rejected, beta)
        grads = torch.autograd.grad(loss.sum(), [pol_chosen, pol_rejected], allow_unused=True)
        columns = [loss.detach()] + [torch.zeros_like(loss) if g is None else g for g in grads]
        for column in columns:
            digest.update(",".join(_quantize(v) for v in column.double().tolist()).encode())
            digest.update(b";")
    return digest.hexdigest()[:16]


def canonical_form(source: str, entry: str = "loss_fn") -> str | None:
    """The loss as an expanded sympy expression over `margin`, `beta` and any input it uses beyond the margin.

    Returns None when the code cannot be translated. It does not run the code, but sympy can be slow on
    adversarial expressions: for untrusted source, take `ValidationResult.canonical_form` from the sandbox.
    """
    try:
        expr = to_sympy(source, entry)
        expr = expr.subs(POLICY_CHOSEN, MARGIN + POLICY_REJECTED + REFERENCE_CHOSEN - REFERENCE_REJECTED)
        text = str(sympy.expand(expr, force=True))
    except Exception:  # the translator and sympy raise many types on code they cannot model
        return None
    return text if len(text) <= MAX_CANONICAL_CHARS else None
