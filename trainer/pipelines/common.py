"""What every pipeline shares: one training step and the facts a pipeline records about it."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

from trainer.config import TrainingConfig, TrainRun
from trainer.train import TrainResult, run_training


def train(
    training: TrainingConfig, data: Path, output_dir: Path, ref_cache_dir: str | None = None
) -> TrainResult:
    """One training step of a pipeline into ``output_dir`` (emptied first: a half-written checkpoint of a cut-off
    run is never mixed with the new one)."""
    shutil.rmtree(output_dir, ignore_errors=True)
    run = TrainRun(data=str(data), output_dir=str(output_dir), ref_cache_dir=ref_cache_dir)
    return run_training(training, run)


def train_facts(result: TrainResult) -> dict[str, Any]:
    """What a pipeline's state records about a finished training step."""
    return {
        "checkpoint": result.output_dir,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "first_loss": result.first_loss,
        "last_loss": result.last_loss,
    }


def file_identity(path: str | Path) -> dict[str, str]:
    """A data file as a run's configuration records it: where it is and what it holds."""
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
