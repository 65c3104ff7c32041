"""A proposed loss as the trainer takes it: the candidate's source compiled by the sandbox into a ``LossSpec``."""

from __future__ import annotations

from sandbox.compile import compile_loss
from trainer.losses.contract import LossSpec
from trainer.losses.registry import discovered_loss_spec


def candidate_loss(name: str, code: str | None) -> LossSpec | None:
    """What ``run_training`` takes as ``loss``: None for a registry loss (``training.loss``), else the candidate's
    source compiled by the sandbox (policy check, restricted globals, audit guard)."""
    if code is None:
        return None
    return discovered_loss_spec(name, compile_loss(code), code)
