"""The online direction check: does a loss still push towards the preference on real training batches?

`direction(loss, ...)` evaluates the loss on detached copies of one batch's log-probs and returns the batch
means of dL/d(chosen log-ratio) and dL/d(rejected log-ratio) (the reference log-probs are constants, so these
are the derivatives with respect to the policy log-probs). `token_direction` does the same for a loss of the
token contract: per example, the derivatives with respect to the policy token log-probs summed over the
completion tokens (the derivative along a shift of every token's log-prob), then the batch mean. A loss that follows the preference has
chosen < 0 and rejected > 0; one that turns against it has both signs reversed. `DirectionMonitor` turns the
readings of consecutive batches into a stop decision with a reason for the archive.

Losses with a target margin (IPO) legitimately reverse on batches whose margins overshoot the target, so a
single reversed batch is not a verdict: the monitor waits for `patience` reversed batches in a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sandbox.contract import TOKEN


@dataclass(frozen=True)
class Direction:
    """Batch means of the loss's derivatives with respect to the chosen and the rejected log-ratio."""

    chosen: float
    rejected: float

    @property
    def follows_preference(self) -> bool:
        return self.chosen < 0.0 and self.rejected > 0.0

    @property
    def against_preference(self) -> bool:
        return self.chosen > 0.0 and self.rejected < 0.0


def direction(
    loss_fn: Callable[..., torch.Tensor],
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    **optional: torch.Tensor,
) -> Direction:
    """The direction of `loss_fn` on one batch, computed on detached copies (training's graph is untouched);
    `optional` inputs (the completion lengths) are passed through by keyword."""
    chosen = policy_chosen_logps.detach().clone().requires_grad_(True)
    rejected = policy_rejected_logps.detach().clone().requires_grad_(True)
    extra = {role: value.detach() for role, value in optional.items()}
    with torch.enable_grad():
        losses = loss_fn(
            chosen,
            rejected,
            reference_chosen_logps.detach(),
            reference_rejected_logps.detach(),
            beta,
            **extra,
        )
        grads = torch.autograd.grad(losses.sum(), [chosen, rejected], allow_unused=True)
    means = [0.0 if g is None else g.double().mean().item() for g in grads]
    return Direction(chosen=means[0], rejected=means[1])


def token_direction(loss_fn: Callable[..., torch.Tensor], inputs: dict[str, Any]) -> Direction:
    """The direction of a token-contract loss on one batch given by role (required roles, beta, and any optional
    ones to pass), on detached copies: batch means of the per-example derivatives summed over completion tokens."""
    values = {role: v.detach() if isinstance(v, torch.Tensor) else v for role, v in inputs.items()}
    policy = [values[role].clone().requires_grad_(True) for role in TOKEN_POLICY_ROLES]
    values.update(zip(TOKEN_POLICY_ROLES, policy, strict=True))
    required = [values[spec.role] for spec in TOKEN.required]
    extra = {spec.role: values[spec.role] for spec in TOKEN.optional if spec.role in values}
    with torch.enable_grad():
        losses = loss_fn(*required, **extra)
        grads = torch.autograd.grad(losses.sum(), policy, allow_unused=True)
    masks = (values["chosen_mask"], values["rejected_mask"])
    means = [
        0.0 if g is None else (g * m).double().sum(-1).mean().item()
        for g, m in zip(grads, masks, strict=True)
    ]
    return Direction(chosen=means[0], rejected=means[1])


TOKEN_POLICY_ROLES = ("policy_chosen_token_logps", "policy_rejected_token_logps")


class DirectionMonitor:
    """Feed it one `Direction` per training batch; `stopped` turns true after `patience` reversed batches in a
    row, with `reason` saying so (for a `failed` status)."""

    def __init__(self, patience: int = 20) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.patience = patience
        self.reversed_in_a_row = 0
        self.batches = 0
        self.reason: str | None = None

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def update(self, reading: Direction) -> bool:
        """Record one batch; True once the loss has turned against the preference."""
        self.batches += 1
        self.reversed_in_a_row = self.reversed_in_a_row + 1 if reading.against_preference else 0
        if self.reason is None and self.reversed_in_a_row >= self.patience:
            self.reason = (
                f"the loss turned against the preference: on {self.patience} batches in a row (up to batch "
                f"{self.batches}) it raised the rejected and lowered the chosen log-ratio "
                f"(last batch: dL/d chosen {reading.chosen:+.3g}, dL/d rejected {reading.rejected:+.3g})"
            )
        return self.stopped
