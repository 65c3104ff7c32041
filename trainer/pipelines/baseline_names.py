"""What a baseline name means: a fixed procedure (``PIPELINE_BASELINES``, run by ``trainer.pipelines.baselines``) or
a registry loss trained on the pairs. Light (no pipeline imports), so that the search validates a recipe's
``baselines:`` without loading the procedures.

Every ``trainer.losses.loss_names()`` entry is a loss baseline under its own name, and so is a weighted combination
(``"0.8*sigmoid+sft"``); ``dpo`` is the alias of ``sigmoid``. ``spin`` and ``spa`` name the procedures, which train
the losses of the same names inside their iterations."""

from __future__ import annotations

from trainer.losses import get_loss_spec, loss_names

PIPELINE_BASELINES = ("spin", "spa", "aepo_dpo")  # procedures, not just losses
BASELINE_ALIASES = {"dpo": "sigmoid"}


def baseline_loss(name: str) -> str | None:
    """The registry loss baseline ``name`` trains with, None for a procedure; KeyError (listing what is known) for a
    name that is neither."""
    if name in PIPELINE_BASELINES:
        return None
    loss = BASELINE_ALIASES.get(name, name)
    try:
        get_loss_spec(loss)
    except (KeyError, ValueError) as exc:
        why = f" ({exc.args[0]})" if "+" in name or "*" in name else ""
        raise KeyError(
            f"unknown baseline {name!r}{why}: a baseline is a procedure ({', '.join(PIPELINE_BASELINES)}), 'dpo' "
            f"(= sigmoid), a registry loss or a weighted combination such as '0.8*sigmoid+sft'; registry losses: "
            f"{', '.join(loss_names())}"
        ) from None
    return loss


def check_baselines(names: tuple[str, ...], reference: str) -> None:
    """ValueError when a name is unknown, or when ``reference`` (the baseline the leaderboard's paired deltas are
    taken against) is not among the baselines (by name, or as the same registry loss: ``dpo`` is ``sigmoid``)."""
    try:
        losses = {name: baseline_loss(name) for name in names}
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if names and not reference_among(reference, names, losses):
        raise ValueError(
            f"the reference baseline {reference!r} is not among the baselines {list(names)}: add it, or set "
            "fitness.reference_baseline to one of them"
        )


def reference_among(reference: str, names: tuple[str, ...], losses: dict[str, str | None]) -> bool:
    if reference in names:
        return True
    try:
        loss = baseline_loss(reference)
    except KeyError:
        return False
    return loss is not None and loss in losses.values()
