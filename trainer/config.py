"""``PreferenceConfig``: TRL's ``DPOConfig`` plus the knobs of the shared trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig


@dataclass
class PreferenceConfig(DPOConfig):
    """Adds the loss (a registry name), its parameters, and the reference log-prob cache folder.

    With ``ref_cache_dir`` set, sequence-level losses read the reference log-probs from the shared cache (computed
    once per dataset and reference model); token-level losses always run the reference model alongside."""

    loss: str = field(default="sigmoid", metadata={"help": "registry name of the loss (see trainer.losses)"})
    loss_params: dict = field(default_factory=dict, metadata={"help": "parameters of the loss, e.g. {'alpha': 0.5}"})
    ref_cache_dir: str | None = field(default=None, metadata={"help": "folder of the shared reference cache"})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "keep only the last N prompt tokens (TRL 1.x truncates whole sequences only)"}
    )
