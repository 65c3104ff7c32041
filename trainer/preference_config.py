"""``PreferenceConfig``: TRL's ``DPOConfig`` plus what ``PreferenceTrainer`` adds, and its one constructor from a
``TrainingConfig`` and a ``TrainRun``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import DPOConfig

from trainer.config import TrainingConfig, TrainRun
from trainer.deepspeed import config_path
from trainer.hardware import default_device, resolve_dtype


@dataclass
class PreferenceConfig(DPOConfig):
    """TRL's ``DPOConfig`` plus the loss (a registry name), its parameters, the reference log-prob cache folder and
    prompt truncation. Built only by ``from_training``: ``trainer.config.TrainingConfig`` is what users set.

    With ``ref_cache_dir`` set, sequence-level losses read the reference log-probs from the shared cache (computed
    once per dataset and reference model); token-level losses always run the reference model alongside."""

    loss: str = field(default="sigmoid", metadata={"help": "registry name of the loss (see trainer.losses)"})
    loss_params: dict = field(
        default_factory=dict, metadata={"help": "parameters of the loss, e.g. {'alpha': 0.5}"}
    )
    ref_cache_dir: str | None = field(default=None, metadata={"help": "folder of the shared reference cache"})
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "keep only the last N prompt tokens (TRL 1.x truncates whole sequences only)"},
    )

    @classmethod
    def from_training(
        cls, training: TrainingConfig, run: TrainRun, deepspeed: str | None = None
    ) -> PreferenceConfig:
        """The one translation of a ``TrainingConfig`` (how) and a ``TrainRun`` (where) into TRL's arguments.
        ``training.deepspeed`` is not read here: the launcher (``evo.workers``) decides where it applies and passes
        it as ``deepspeed`` inside its workers, which the HF Trainer's DeepSpeed integration takes."""
        device = default_device()
        bf16 = resolve_dtype(training.dtype, device) == torch.bfloat16
        return cls(
            output_dir=run.output_dir,
            loss=training.loss,
            loss_params=dict(training.loss_params),
            beta=training.beta,
            learning_rate=training.learning_rate,
            lr_scheduler_type=training.lr_scheduler_type,
            warmup_steps=training.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
            optim=training.optim,
            per_device_train_batch_size=training.batch_size,
            gradient_accumulation_steps=training.gradient_accumulation_steps,
            max_steps=training.max_steps,
            num_train_epochs=training.num_train_epochs,
            max_length=training.max_length,
            max_prompt_length=training.max_prompt_length,
            gradient_checkpointing=training.gradient_checkpointing,
            seed=training.seed,
            ref_cache_dir=run.ref_cache_dir,
            logging_steps=1,
            save_strategy="no",
            report_to=run.report_to,
            run_name=run.run_name,
            use_cpu=device == "cpu",
            bf16=bf16,  # autocast over float32 master weights, on a GPU or a CPU (trainer.hardware)
            dataloader_num_workers=0,
            disable_tqdm=True,
            deepspeed=str(config_path(deepspeed)) if deepspeed else None,
        )
