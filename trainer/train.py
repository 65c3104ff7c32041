"""Train one loss on one preference file: the library call (``run_training``) and its CLI.

    python -m trainer.train --loss sigmoid --data pairs.jsonl --model tiny --max-steps 20 --output-dir out/

The output folder holds a loadable HF checkpoint (safetensors + tokenizer) and ``metrics.json``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from trainer.config import PreferenceConfig
from trainer.data import load_preference_dataset
from trainer.losses import LossSpec
from trainer.models import load_policy, resolve_model_path
from trainer.trainer import PreferenceTrainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSpec:
    """Everything one training run needs; defaults run on a 2-core CPU."""

    model: str
    data: str
    output_dir: str
    loss: str = "sigmoid"
    loss_params: dict = field(default_factory=dict)
    ref_model: str | None = None
    beta: float = 0.1
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = 0.0
    optim: str = "adamw_torch"
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = -1
    num_train_epochs: float = 1.0
    max_length: int = 256
    max_prompt_length: int | None = None
    gradient_checkpointing: bool = False  # recompute activations: less memory, ~30% more compute (7B on GPUs)
    seed: int = 0
    ref_cache_dir: str | None = None
    save_model: bool = True
    report_to: str = "none"
    run_name: str | None = None


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    losses: list[float]
    metrics: dict


def build_config(spec: TrainSpec) -> PreferenceConfig:
    return PreferenceConfig(
        output_dir=spec.output_dir,
        loss=spec.loss,
        loss_params=dict(spec.loss_params),
        beta=spec.beta,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler_type,
        warmup_steps=spec.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        optim=spec.optim,
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        max_steps=spec.max_steps,
        num_train_epochs=spec.num_train_epochs,
        max_length=spec.max_length,
        max_prompt_length=spec.max_prompt_length,
        gradient_checkpointing=spec.gradient_checkpointing,
        seed=spec.seed,
        ref_cache_dir=spec.ref_cache_dir,
        logging_steps=1,
        save_strategy="no",
        report_to=spec.report_to,
        run_name=spec.run_name,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # bf16 autocast on CPU is ~10x slower
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def run_training(
    spec: TrainSpec, loss: Callable | LossSpec | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Train ``spec.loss`` (or the given callable/spec, e.g. a sandbox-compiled discovered loss); ``callbacks``
    join the trainer's (e.g. ``trainer.step_log.StepLogCallback`` for live curves)."""
    started = time.monotonic()
    _, dataset = load_preference_dataset(spec.data)
    model, tokenizer = load_policy(spec.model)
    ref_model = None
    if spec.ref_model is not None:
        ref_model = AutoModelForCausalLM.from_pretrained(resolve_model_path(spec.ref_model), dtype=model.dtype)
    trainer = PreferenceTrainer(
        model=model, ref_model=ref_model, args=build_config(spec), train_dataset=dataset,
        processing_class=tokenizer, loss=loss, callbacks=list(callbacks),
    )
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.save_model:
        trainer.model.config.use_cache = True  # TRL trains with the KV cache off; generation from the checkpoint wants it
        trainer.save_model(str(out))
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
            "spec": asdict(spec),
        },
    )
    (out / "metrics.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="sigmoid", help="registry name (see trainer.losses.loss_names())")
    parser.add_argument("--loss-params", default="{}", help="JSON object of loss parameters")
    parser.add_argument("--data", required=True, help=".jsonl or .json preference file (format auto-detected)")
    parser.add_argument("--model", default="tiny", help="tiny | smollm2-135m-instruct | HF id | local path")
    parser.add_argument("--ref-model", default=None, help="reference model (default: the initial policy)")
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-cache-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_training(
        TrainSpec(
            model=args.model, data=args.data, output_dir=args.output_dir, loss=args.loss,
            loss_params=json.loads(args.loss_params), ref_model=args.ref_model, beta=args.beta,
            learning_rate=args.learning_rate, batch_size=args.batch_size, max_steps=args.max_steps,
            num_train_epochs=args.epochs, max_length=args.max_length, seed=args.seed,
            ref_cache_dir=args.ref_cache_dir,
        )
    )
    print(
        f"{result.metrics['loss']}: {result.steps} steps in {result.seconds:.1f}s, "
        f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}; checkpoint in {result.output_dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
