"""A discovered loss as the trainer takes it: its stored graph rebuilt by the sandbox's trusted interpreter, checked
online for its direction.

No candidate source is compiled or run here: ``candidate_loss`` takes the graph JSON the sandbox traced when the
candidate validated (``evo.archive.Candidate.graph``). Every training call of the loss also computes the loss's
direction on detached copies of that batch's log-probs (``sandbox.direction``: two batch means of a derivative,
a few scalar autograd operations); after ``patience`` batches in a row that push against the preference it raises
``CandidateTurned``, which the job records as ``failed`` with the reason."""

from __future__ import annotations

import json
from typing import Any

import torch

from sandbox.direction import Direction, DirectionMonitor, direction
from sandbox.interpreter import GraphLoss, build_loss
from trainer.losses.contract import LossSpec


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
    ) -> torch.Tensor:
        inputs = (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        )
        losses = self.loss(*inputs, beta)
        if self.monitor is not None and torch.is_grad_enabled() and policy_chosen_logps.requires_grad:
            reading = _across_ranks(direction(self.loss, *inputs, beta), policy_chosen_logps.device)
            if self.monitor.update(reading):
                raise CandidateTurned(self.monitor.reason or "the loss turned against the preference")
        return losses


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
    graph) behind the online direction check with ``patience`` (``TrainingConfig.direction_patience``). Every
    trainer that builds the spec gets its own monitor."""
    if graph is None:
        return None
    loss = build_loss(graph)
    text = graph if isinstance(graph, str) else json.dumps(graph)
    return LossSpec(
        name=name, level="sequence", factory=lambda: DirectionCheckedLoss(loss, patience), source=text
    )
