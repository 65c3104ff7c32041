"""What every pipeline shares: the training options and one training step."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.train import TrainResult, TrainSpec, run_training


@dataclass(frozen=True)
class TrainOptions:
    """The optimisation settings of a pipeline's training steps (the loss and the data come from the step)."""

    beta: float = 0.1
    learning_rate: float = 2e-5
    batch_size: int = 8
    max_steps: int = -1
    epochs: float = 1.0
    max_length: int = 256
    seed: int = 0
    loss_params: dict = field(default_factory=dict)
    ref_cache_dir: str | None = None


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--beta", type=float, default=TrainOptions.beta)
    group.add_argument("--learning-rate", type=float, default=TrainOptions.learning_rate)
    group.add_argument("--batch-size", type=int, default=TrainOptions.batch_size)
    group.add_argument(
        "--max-steps", type=int, default=TrainOptions.max_steps, help="per training step; -1: epochs"
    )
    group.add_argument("--epochs", type=float, default=TrainOptions.epochs)
    group.add_argument("--max-length", type=int, default=TrainOptions.max_length)
    group.add_argument("--seed", type=int, default=TrainOptions.seed)
    group.add_argument("--loss-params", type=json.loads, default={}, help="JSON object of loss parameters")
    group.add_argument(
        "--ref-cache-dir", default=None, help="shared reference log-prob cache (sequence losses)"
    )


def train_options_from_args(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        beta=args.beta,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        epochs=args.epochs,
        max_length=args.max_length,
        seed=args.seed,
        loss_params=dict(args.loss_params),
        ref_cache_dir=args.ref_cache_dir,
    )


def train(
    model: str, data: Path, output_dir: Path, loss: str, options: TrainOptions, ref_model: str | None = None
) -> TrainResult:
    """One training run into ``output_dir`` (emptied first: a half-written checkpoint of a cut-off run is
    never mixed with the new one)."""
    shutil.rmtree(output_dir, ignore_errors=True)
    spec = TrainSpec(
        model=model,
        data=str(data),
        output_dir=str(output_dir),
        loss=loss,
        loss_params=dict(options.loss_params),
        ref_model=ref_model,
        beta=options.beta,
        learning_rate=options.learning_rate,
        batch_size=options.batch_size,
        max_steps=options.max_steps,
        num_train_epochs=options.epochs,
        max_length=options.max_length,
        seed=options.seed,
        ref_cache_dir=options.ref_cache_dir,
    )
    return run_training(spec)


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
