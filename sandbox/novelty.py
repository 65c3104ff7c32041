"""Novelty keys for losses: a behavioural fingerprint and a sympy canonical form, both of the traced graph.

The fingerprint evaluates the loss and its gradients with respect to the policy log-probs on a fixed grid of
inputs (two betas, scaled margins from strongly wrong to strongly right, log-probs like those of training; for a
graph that binds the completion lengths, lengths that differ from row to row, so that a length-normalised loss
and its unnormalised form differ; for a token-level graph, the same margins spread over completions of
different lengths with padding, `token_grid_inputs`, and the gradients per token) in
float32, the dtype training uses, rounds every number to `SIGNIFICANT_DIGITS` significant digits (values
below `RELATIVE_ZERO` of their column's largest, float32 noise, count as zero) and hashes the result: losses that compute the same function in training
collide however they are written, and a loss that differs only in float64 is a clone. It runs the loss, so
the sandbox computes it inside its child, on the callable rebuilt from the graph.

The canonical form translates the graph to sympy (`sandbox.graph_sympy`), rewrites it over the log-ratio margin
and beta (over the policy log-probs and lengths for a graph that reads the lengths or no reference), and
expands it: readable in the archive, but only for graphs the
translator models (None otherwise). Token-level graphs have none: their sums over the sequence axis have no
closed form over the margin.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import sympy
import torch

from sandbox.contract import KL_ROLES, LENGTH_ROLES, REFERENCE_ROLES, TOKEN
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
# Completion lengths of the grid's rows (token counts: generic, different for chosen and rejected).
GRID_CHOSEN_LENGTHS = (11, 47, 23, 90, 5, 64, 31, 128, 17, 56, 240, 9)
GRID_REJECTED_LENGTHS = (38, 13, 71, 26, 150, 8, 44, 19, 97, 33, 12, 180)
GRID_TOKEN_WIDTH = 7  # the token grid's padded length; row i's completions have 1 + (i * k) % 7 tokens


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


def token_grid_inputs(beta: float) -> dict[str, torch.Tensor]:
    """The grid for the token contract, keyed by role (float32): each row's summed margins and summed log-probs
    are those of `grid_inputs`, spread evenly over completions of 1 to GRID_TOKEN_WIDTH tokens, then padding."""
    summed = grid_inputs(beta)
    rows = len(GRID_SCALED_MARGINS)
    positions = torch.arange(GRID_TOKEN_WIDTH)
    inputs: dict[str, torch.Tensor] = {}
    for side, step, policy, reference in (
        ("chosen", 3, summed[0], summed[2]),
        ("rejected", 5, summed[1], summed[3]),
    ):
        lengths = torch.tensor([1 + (i * step) % GRID_TOKEN_WIDTH for i in range(rows)])
        mask = (positions[None, :] < lengths[:, None]).to(FINGERPRINT_DTYPE)
        wave = 1.0 + 0.3 * torch.sin(positions[None, :] * 1.7 + torch.arange(rows)[:, None])
        spread = wave * mask / (wave * mask).sum(-1, keepdim=True)  # sums to 1 over each completion
        inputs[f"policy_{side}_token_logps"] = policy[:, None] * spread
        inputs[f"reference_{side}_token_logps"] = reference[:, None] * spread
        inputs[f"{side}_mask"] = mask
        difference = (policy - reference)[:, None] * spread
        inputs[f"{side}_kl"] = difference**2 / 2
    return inputs


def _evaluate(
    loss_fn: Callable[..., torch.Tensor], graph: LossGraph | None, beta: float
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """The loss and its gradients w.r.t. the two policy inputs on the grid for `beta`."""
    bound = set(graph.inputs) if graph is not None else set()
    if graph is not None and graph.contract == TOKEN.name:
        inputs = token_grid_inputs(beta)
        policy = [inputs["policy_chosen_token_logps"], inputs["policy_rejected_token_logps"]]
        for tensor in policy:
            tensor.requires_grad_(True)
        required = [inputs[spec.role] for spec in TOKEN.required if spec.kind == "tensor"]
        loss = loss_fn(*required, beta, **{role: inputs[role] for role in KL_ROLES if role in bound})
    else:
        policy = list(grid_inputs(beta))
        for tensor in policy[:2]:
            tensor.requires_grad_(True)
        lengths = (GRID_CHOSEN_LENGTHS, GRID_REJECTED_LENGTHS)
        extra = {
            role: torch.tensor(values, dtype=FINGERPRINT_DTYPE)
            for role, values in zip(LENGTH_ROLES, lengths, strict=True)
            if role in bound
        }
        loss = loss_fn(*policy, beta, **extra)
        policy = policy[:2]
    return loss, torch.autograd.grad(loss.sum(), policy, allow_unused=True)


def fingerprint(loss_fn: Callable[..., torch.Tensor], graph: LossGraph | None = None) -> str:
    """Hash of the rounded float32 losses and policy gradients on the fixed grid (16 hex digits). `graph` says
    which contract and optional inputs the loss takes (None: the sequence contract without lengths)."""
    digest = hashlib.sha256()
    for beta in GRID_BETAS:
        loss, grads = _evaluate(loss_fn, graph, beta)
        columns = [loss.detach()] + [torch.zeros_like(loss) if g is None else g.flatten() for g in grads]
        for column in columns:
            digest.update(_quantize_column(column.double().tolist()).encode())
            digest.update(b";")
    return digest.hexdigest()[:16]


def canonical_form(graph: LossGraph) -> str | None:
    """The loss as an expanded sympy expression over `margin`, `beta` and any input it uses beyond the margin.

    Returns None when the graph cannot be translated. sympy can be slow on adversarial expressions: the
    sandbox computes this in its child under a time budget.
    """
    if graph.contract != "sequence":
        return None
    try:
        expr = to_sympy(graph)
        if not graph.reads & set(LENGTH_ROLES) and graph.reads & set(REFERENCE_ROLES):
            expr = expr.subs(POLICY_CHOSEN, MARGIN + POLICY_REJECTED + REFERENCE_CHOSEN - REFERENCE_REJECTED)
        text = str(sympy.expand(expr, force=True))
    except Exception:  # the translator and sympy raise many types on graphs they cannot model
        return None
    return text if len(text) <= MAX_CANONICAL_CHARS else None
