"""How a model is trained (``TrainingConfig``) and where one training run reads and writes (``TrainRun``).

``TrainingConfig`` is the only definition of the training settings. The search config embeds it (a recipe's
``training:`` section), ``evo.retrain`` and the search's candidate jobs train with it, the pipelines' training
steps take it, and every command line is generated from it (``trainer.arguments``), so a flag and its default
cannot drift from the config. Its defaults are the embedded default search's: SmolLM2-135M-Instruct, DPO
(``sigmoid``), beta 0.1, one epoch at lr 5e-5 with a constant schedule, batch 8, max length 192.

A tool that deliberately trains differently derives its settings with ``dataclasses.replace`` next to a comment
that says why (``evaluators.separation``); a method that dictates its loss uses ``with_loss``.

``trainer.trainer.PreferenceConfig.from_training`` turns a ``TrainingConfig`` and a ``TrainRun`` into TRL's
arguments; nothing else builds them. This module imports neither torch nor TRL, so configs load quickly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

DTYPES = ("auto", "float32", "bfloat16")
# Fields that choose how training is launched, read by the launcher (evo.workers: the search and evo.retrain), which
# hands DeepSpeed to its workers' trainers: the command-line tools train in their own process and have no flag for them.
LAUNCH_FIELDS = ("deepspeed",)
Dtype = Literal["auto", "float32", "bfloat16"]


def _required(help: str) -> Any:
    """A field without a default (a required flag) and its help text."""
    return field(metadata={"help": help})


def _knob(default: Any, help: str) -> Any:
    """A field with a default and the help text its command-line flag shows."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainingConfig:
    """How one model is trained. Every candidate and baseline of a search trains with the same one, so fitness
    compares losses only."""

    model: str = _knob("smollm2-135m-instruct", "policy: tiny | smollm2-135m-instruct | HF id | local path")
    ref_model: str | None = _knob(None, "reference model (none: the initial policy)")
    loss: str = _knob(
        "sigmoid", "registry loss (trainer.losses.loss_names()); a search trains each candidate's"
    )
    loss_params: dict = _knob({}, 'JSON object of the loss\'s parameters, e.g. {"alpha": 0.5}')
    beta: float = _knob(0.1, "strength of the KL regularization to the reference")
    # one epoch at 5e-5 moves the policy about as far as DESIGN.md's 3 epochs at 2e-5
    learning_rate: float = _knob(5e-5, "peak learning rate")
    lr_scheduler_type: str = _knob(
        "constant", "transformers scheduler name: constant | linear | cosine | ..."
    )
    warmup_ratio: float = _knob(0.0, "fraction of the steps spent warming the learning rate up")
    optim: str = _knob("adamw_torch", "transformers optimizer name: adamw_torch | rmsprop | ...")
    batch_size: int = _knob(8, "pairs per device and optimizer micro-step")
    gradient_accumulation_steps: int = _knob(1, "micro-steps per optimizer step")
    max_steps: int = _knob(-1, "optimizer steps; -1: num_train_epochs decides")
    # the default run (baseline + up to 4 candidates) fits 30 min on 2 cores
    num_train_epochs: float = _knob(1.0, "passes over the training pairs (when max_steps is -1)")
    max_length: int = _knob(192, "tokens of prompt + completion kept per sequence")
    max_prompt_length: int | None = _knob(None, "keep only the last N prompt tokens (none: no prompt limit)")
    # on for 7B recipes (memory); off on CPU, where it only costs time (~30% more compute)
    gradient_checkpointing: bool = _knob(False, "recompute activations in the backward pass: less memory")
    seed: int = _knob(0, "seed of the data order and the initialization of new weights")
    dtype: Dtype = _knob(
        "auto",
        "auto (bf16 autocast on GPUs, float32 on CPUs: see trainer.hardware) | float32 | bfloat16",
    )
    # IPO-like losses reverse on batches that overshoot their target margin: one reversed batch is no verdict
    direction_patience: int = _knob(
        20,
        "discovered losses: stop after this many batches in a row that push against the preference (0: off)",
    )
    # evo.workers trains the search's candidates and evo.retrain's runs under it on Ray Train's GPU workers
    deepspeed: str | None = _knob(
        None, "DeepSpeed in the Ray Train workers: zero2 | zero3 | a DeepSpeed .json path (GPUs only)"
    )

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.loss_params, dict):
            raise ValueError(f"loss_params must be a mapping, got {type(self.loss_params).__name__}")
        if self.direction_patience < 0:
            raise ValueError(f"direction_patience must be >= 0, got {self.direction_patience}")

    def with_loss(self, loss: str) -> TrainingConfig:
        """The same training with another loss (a baseline's, a method's step). ``loss_params`` belong to a loss:
        they are kept for the same loss and dropped for another."""
        if loss == self.loss:
            return self
        return dataclasses.replace(self, loss=loss, loss_params={})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """From a mapping (a job file, a recorded config); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class TrainRun:
    """Where one training run reads its pairs and writes its checkpoint, and how it reports (not how it trains)."""

    data: str = _required(".jsonl or .json preference file (format auto-detected)")
    output_dir: str = _required("folder of the checkpoint and metrics.json")
    ref_cache_dir: str | None = _knob(None, "shared reference log-prob cache (sequence-level losses)")
    report_to: str = _knob("none", "none | wandb | tensorboard ...")
    run_name: str | None = _knob(None, "name of the run in the tracker")
    save_model: bool = _knob(True, "write the trained checkpoint (no: metrics only)")
