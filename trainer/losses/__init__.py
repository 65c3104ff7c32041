"""Loss contracts and the registry of built-in preference losses."""

from trainer.losses.contract import LossInputs, LossSpec
from trainer.losses.registry import discovered_loss_spec, get_loss_spec, loss_names, register

__all__ = ["LossInputs", "LossSpec", "discovered_loss_spec", "get_loss_spec", "loss_names", "register"]
