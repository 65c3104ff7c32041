"""Train one loss on one preference file: the library call (``run_training``) and its CLI.

    python -m trainer.train --loss sigmoid --data pairs.jsonl --model tiny --max-steps 20 --output-dir out/

The flags are generated from ``trainer.config.TrainingConfig`` (how to train; defaults: the default search's)
and ``TrainRun`` (where), so they carry the config's names and defaults. This command trains in its own process;
``--deepspeed`` is not among its flags (``evo.workers`` trains on several workers, with DeepSpeed). The output folder holds a
loadable HF checkpoint (safetensors + tokenizer) and ``metrics.json``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import AutoModelForCausalLM, TrainerCallback

from trainer.arguments import add_arguments, from_arguments
from trainer.config import LAUNCH_FIELDS, TrainingConfig, TrainRun
from trainer.data import load_preference_dataset
from trainer.losses import LossSpec
from trainer.models import load_policy, resolve_model_path
from trainer.trainer import PreferenceConfig, PreferenceTrainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    losses: list[float]
    metrics: dict


def run_training(
    training: TrainingConfig,
    run: TrainRun,
    loss: Callable | LossSpec | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    deepspeed: str | None = None,
) -> TrainResult:
    """Train ``training.loss`` (or the given callable/spec, e.g. a discovered loss rebuilt from its graph) as
    ``training`` says, on ``run.data`` into ``run.output_dir``; ``callbacks`` join the trainer's (e.g.
    ``trainer.step_log.StepLogCallback`` for live curves). In a process group that a launcher started (Ray
    Train: ``evo.workers``) every rank calls this and trains data-parallel; ``deepspeed`` (a config name or path)
    then trains under the HF Trainer's DeepSpeed integration. Rank 0 writes the tokenizer and ``metrics.json``;
    the result's ``metrics["world_size"]`` is the number of ranks."""
    started = time.monotonic()
    args = PreferenceConfig.from_training(training, run, deepspeed=deepspeed)
    _, dataset = load_preference_dataset(run.data)
    model, tokenizer = load_policy(training.model)
    ref_model = None
    if training.ref_model is not None:
        ref_model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(training.ref_model), dtype=model.dtype
        )
    trainer = PreferenceTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        loss=loss,
        callbacks=list(callbacks),
    )
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    out = Path(run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = trainer.is_world_process_zero()
    if run.save_model:
        trainer.model.config.use_cache = (
            True  # TRL trains with the KV cache off; generation from the checkpoint wants it
        )
        trainer.save_model(str(out))  # every rank: ZeRO-3 gathers the shards; rank 0 writes
        if writer:
            tokenizer.save_pretrained(str(out))
    seconds = time.monotonic() - started
    result = TrainResult(
        output_dir=str(out),
        steps=trainer.state.global_step,
        seconds=seconds,
        first_loss=losses[0] if losses else float("nan"),
        last_loss=losses[-1] if losses else float("nan"),
        losses=losses,
        metrics={
            "train": output.metrics,
            "log_history": trainer.state.log_history,
            "loss": trainer.loss_spec.name,
            "ref_cache_hit": getattr(trainer, "ref_cache_hit", None),
            "world_size": args.world_size,
            "deepspeed": deepspeed,
            "training": asdict(training),
            "run": asdict(run),
        },
    )
    if writer:
        (out / "metrics.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    return result


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainingConfig, TrainRun]:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.splitlines()[0])
    add_arguments(parser, TrainRun, title="run")
    add_arguments(parser, TrainingConfig(), omit=LAUNCH_FIELDS, title="training")
    args = parser.parse_args(argv)
    return from_arguments(TrainingConfig(), args), from_arguments(TrainRun, args)


def main(argv: Sequence[str] | None = None) -> int:
    training, run = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_training(training, run)
    print(
        f"{result.metrics['loss']}: {result.steps} steps in {result.seconds:.1f}s, "
        f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}; checkpoint in {result.output_dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
