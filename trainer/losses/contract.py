"""The two loss contracts every preference loss in this project implements.

Sequence level (DiscoPOP-compatible, what the LLM writes)::

    loss_fn(policy_chosen_logps, policy_rejected_logps,
            reference_chosen_logps, reference_rejected_logps, beta) -> Tensor[(batch,)]

All four tensors are 1-D of shape ``(batch,)``: the summed log-probabilities of each completion. Two optional
inputs extend it, each declared on the loss's ``LossSpec`` and given by the trainer only to losses that declare it:

- ``needs_lengths``: the call gains the keywords ``chosen_lengths`` and ``rejected_lengths``, float tensors of
  shape ``(batch,)`` holding the number of completion tokens whose log-probs were summed (length-normalised
  losses: TRL's ``ipo`` and ``sigmoid_norm``, ``sft``, SimPO, ORPO).
- ``reference_free``: the loss does not use a reference model; the trainer runs none and passes zeros as the
  reference log-probs (SimPO, ORPO, ``sft``).

Token level: ``loss_fn(inputs: LossInputs, beta) -> Tensor[(batch,)]`` where ``LossInputs`` carries the per-token
log-probabilities of policy and reference, the completion masks, optional per-token weights, the per-token
KL(ref || policy) when the loss declares ``needs_kl``, the per-token log-probs of the logit-extrapolated model when
it declares ``extrapolation_param`` (SPA), and the training progress (for scheduled losses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

Level = Literal["sequence", "token"]


@dataclass(frozen=True)
class LossInputs:
    """Per-token view of one preference batch; every tensor is ``(batch, seq)`` and aligned to the next-token
    targets. Masked-out positions hold 0 in the log-prob tensors."""

    policy_chosen_token_logps: torch.Tensor
    policy_rejected_token_logps: torch.Tensor
    reference_chosen_token_logps: torch.Tensor
    reference_rejected_token_logps: torch.Tensor
    chosen_mask: torch.Tensor
    rejected_mask: torch.Tensor
    chosen_weights: torch.Tensor | None = None
    rejected_weights: torch.Tensor | None = None
    chosen_kl: torch.Tensor | None = None
    rejected_kl: torch.Tensor | None = None
    extrapolated_chosen_token_logps: torch.Tensor | None = None
    extrapolated_rejected_token_logps: torch.Tensor | None = None
    step: int = 0
    max_steps: int = 1

    @property
    def policy_chosen_logps(self) -> torch.Tensor:
        return (self.policy_chosen_token_logps * self.chosen_mask).sum(-1)

    @property
    def policy_rejected_logps(self) -> torch.Tensor:
        return (self.policy_rejected_token_logps * self.rejected_mask).sum(-1)

    @property
    def reference_chosen_logps(self) -> torch.Tensor:
        return (self.reference_chosen_token_logps * self.chosen_mask).sum(-1)

    @property
    def reference_rejected_logps(self) -> torch.Tensor:
        return (self.reference_rejected_token_logps * self.rejected_mask).sum(-1)

    @property
    def chosen_lengths(self) -> torch.Tensor:
        return self.chosen_mask.sum(-1)

    @property
    def rejected_lengths(self) -> torch.Tensor:
        return self.rejected_mask.sum(-1)

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.max_steps))


@dataclass(frozen=True)
class LossSpec:
    """A registry entry. ``factory(**params)`` returns a fresh loss callable (stateful losses such as SPA keep
    their state on the instance, so every trainer builds its own).

    ``needs_lengths`` and ``reference_free`` declare the optional inputs of the sequence contract (module
    docstring). ``extrapolation_param`` names the parameter holding the strength ``lam`` of a token-level loss that
    reads the log-probs of the extrapolated model, whose logits are ``(1 + lam) * policy - lam * reference``. A
    ``beta`` among the ``defaults`` is the loss's own published beta: the trainer uses it instead of its
    configured one (SimPO's 2.0), and ``loss_params`` may set it like any other parameter."""

    name: str
    level: Level
    factory: Callable[..., Callable[..., torch.Tensor]]
    source: str
    needs_kl: bool = False
    needs_token_weights: bool = False
    needs_lengths: bool = False
    reference_free: bool = False
    extrapolation_param: str | None = None
    defaults: dict[str, float] = field(default_factory=dict)

    def params(self, **params: float) -> dict[str, float]:
        """The defaults updated with ``params``; an unknown name is an error."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"loss {self.name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(self.defaults)}"
            )
        return {**self.defaults, **params}

    def build(self, **params: float) -> Callable[..., torch.Tensor]:
        resolved = self.params(**params)
        resolved.pop("beta", None)
        return self.factory(**resolved)
