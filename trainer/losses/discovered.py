"""A discovered loss as the trainer takes it: its stored graph rebuilt by the sandbox's trusted interpreter, checked
online for its direction.

No candidate source is compiled or run here: ``candidate_loss`` takes the graph JSON the sandbox traced when the
candidate validated (``evo.archive.Candidate.graph``). Every training call of the loss also computes the loss's
direction on detached copies of that batch's log-probs (``sandbox.direction``: two batch means of a derivative,
a few scalar autograd operations); after ``patience`` batches in a row that push against the preference it raises
``CandidateTurned``, which the job records as ``failed`` with the reason.

The graph says what the trainer must feed it (``LossSpec`` flags): a ``sequence`` graph that binds
``chosen_lengths``/``rejected_lengths`` gets the completion token counts (``needs_lengths``), one that never reads
the reference log-probs trains without a reference model (``reference_free``: zeros are passed in their place); a
``token`` graph is a token-level loss, called with the trainer's ``LossInputs`` mapped onto the token contract's
roles, with the per-token KL when it binds ``chosen_kl``/``rejected_kl`` (``needs_kl``)."""

from __future__ import annotations

import json
from typing import Any

import torch

from sandbox.contract import KL_ROLES, LENGTH_ROLES, REFERENCE_ROLES, TOKEN
from sandbox.direction import Direction, DirectionMonitor, direction, token_direction
from sandbox.interpreter import GraphLoss, build_loss
from trainer.losses.contract import LossInputs, LossSpec


class CandidateTurned(RuntimeError):
    """The online direction check stopped a discovered loss that turned against the preference in training."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DirectionCheckedLoss:
    """A graph loss that feeds a ``DirectionMonitor`` on every training call (gradients enabled and the policy
    log-probs requiring grad; evaluation calls are not counted) and raises ``CandidateTurned`` when it trips.
    ``patience`` 0 turns the check off. In a distributed run every rank averages the readings of all ranks, so
    that all of them stop at the same step."""

    def __init__(self, loss: GraphLoss, patience: int) -> None:
        self.loss = loss
        self.monitor = DirectionMonitor(patience) if patience > 0 else None

    def __call__(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
        beta: float,
        **lengths: torch.Tensor,
    ) -> torch.Tensor:
        inputs = (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        )
        losses = self.loss(*inputs, beta, **lengths)
        if self.monitor is not None and torch.is_grad_enabled() and policy_chosen_logps.requires_grad:
            self._check(direction(self.loss, *inputs, beta, **lengths), policy_chosen_logps.device)
        return losses

    def _check(self, reading: Direction, device: torch.device) -> None:
        if self.monitor is not None and self.monitor.update(_across_ranks(reading, device)):
            raise CandidateTurned(self.monitor.reason or "the loss turned against the preference")


class TokenDirectionCheckedLoss(DirectionCheckedLoss):
    """A token-contract graph loss as the trainer calls token-level losses, ``loss(inputs: LossInputs, beta)``,
    with the same online direction check (``sandbox.direction.token_direction``)."""

    def __call__(self, inputs: LossInputs, beta: float) -> torch.Tensor:  # type: ignore[override]
        roles = token_roles(inputs, beta, kl=bool(set(self.loss.graph.inputs) & set(KL_ROLES)))
        required = [roles[spec.role] for spec in TOKEN.required]
        losses = self.loss(*required, **{role: roles[role] for role in KL_ROLES if role in roles})
        policy = inputs.policy_chosen_token_logps
        if self.monitor is not None and torch.is_grad_enabled() and policy.requires_grad:
            self._check(token_direction(self.loss, roles), policy.device)
        return losses


def token_roles(inputs: LossInputs, beta: float, kl: bool) -> dict[str, object]:
    """The token contract's inputs by role, from the trainer's ``LossInputs`` (the KL only when ``kl``)."""
    roles: dict[str, object] = {
        "policy_chosen_token_logps": inputs.policy_chosen_token_logps,
        "policy_rejected_token_logps": inputs.policy_rejected_token_logps,
        "reference_chosen_token_logps": inputs.reference_chosen_token_logps,
        "reference_rejected_token_logps": inputs.reference_rejected_token_logps,
        "chosen_mask": inputs.chosen_mask,
        "rejected_mask": inputs.rejected_mask,
        "beta": beta,
    }
    if kl:
        if inputs.chosen_kl is None or inputs.rejected_kl is None:
            raise ValueError("the loss reads the per-token KL: its spec must declare needs_kl")
        roles["chosen_kl"], roles["rejected_kl"] = inputs.chosen_kl, inputs.rejected_kl
    return roles


def _across_ranks(reading: Direction, device: torch.device) -> Direction:
    """The mean reading over the ranks of an initialised process group (the reading itself otherwise)."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()) or distributed.get_world_size() < 2:
        return reading
    values = torch.tensor([reading.chosen, reading.rejected], dtype=torch.float64, device=device)
    distributed.all_reduce(values)
    chosen, rejected = (values / distributed.get_world_size()).tolist()
    return Direction(chosen=chosen, rejected=rejected)


def candidate_loss(name: str, graph: str | dict[str, Any] | None, patience: int) -> LossSpec | None:
    """What ``run_training`` takes as ``loss``: None when there is no graph (a registry loss: ``training.loss``),
    else the graph rebuilt by the trusted interpreter (``sandbox.graph.GraphError`` for a malformed or tampered
    graph) behind the online direction check with ``patience`` (``TrainingConfig.direction_patience``), with the
    level and input flags the graph implies (module docstring). Every trainer that builds the spec gets its own
    monitor."""
    if graph is None:
        return None
    loss = build_loss(graph)
    text = graph if isinstance(graph, str) else json.dumps(graph)
    bound = set(loss.graph.inputs)
    if loss.graph.contract == TOKEN.name:
        return LossSpec(
            name=name,
            level="token",
            factory=lambda: TokenDirectionCheckedLoss(loss, patience),
            source=text,
            needs_kl=bool(bound & set(KL_ROLES)),
        )
    return LossSpec(
        name=name,
        level="sequence",
        factory=lambda: DirectionCheckedLoss(loss, patience),
        source=text,
        needs_lengths=bool(bound & set(LENGTH_ROLES)),
        reference_free=not loss.graph.reads & set(REFERENCE_ROLES),
    )
