"""DeepSpeed configurations for multi-GPU training (the HF Trainer's DeepSpeed integration in ``evo.workers``'
Ray Train workers takes one by path).

    zero3.json   ZeRO stage 3: weights, gradients and optimizer states sharded over the GPUs (7B on 8 x 80 GB)
    zero2.json   ZeRO stage 2: gradients and optimizer states sharded; faster when the weights fit on each GPU

Batch size, gradient accumulation, clipping, precision and the bucket sizes are ``"auto"``: the HF Trainer fills
them from the training arguments and the model, so a recipe's ``training`` section stays the only source of
truth. ``zero_allow_untested_optimizer`` lets recipes pick a torch optimizer other than AdamW (SPIN's RMSprop)."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).parent


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def config_path(name_or_path: str) -> Path:
    """A shipped config by name (``zero3``) or any DeepSpeed ``.json`` file by path."""
    shipped = CONFIG_DIR / f"{name_or_path}.json"
    if shipped.exists():
        return shipped
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return path.resolve()
    raise FileNotFoundError(
        f"no DeepSpeed config {name_or_path!r}: name one of {config_names()} or give the path of a .json file"
    )


def load_config(name_or_path: str) -> dict:
    return json.loads(config_path(name_or_path).read_text())
