"""Training curves while they happen: a ``TrainerCallback`` that appends each logged step to a JSON-lines file.

The search's worker writes ``<candidate work dir>/steps.jsonl``; the driver reads the new lines while the candidate
trains and forwards them (to wandb), so a long candidate's curve is visible before it finishes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback


class StepLogCallback(TrainerCallback):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")  # a retried task starts its curve again

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or "loss" not in logs:
            return
        numbers = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(v)}
        with self.path.open("a") as out:
            out.write(json.dumps({"step": state.global_step, **numbers}) + "\n")
