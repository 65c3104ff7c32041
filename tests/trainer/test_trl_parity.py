"""Parity with TRL, the peer: for every loss TRL's ``DPOTrainer`` also has, ``PreferenceTrainer(loss=X)`` and
``DPOTrainer(loss_type=X)`` train the tiny model on the same data with the same seed and log the same loss at every
optimizer step. The policy starts away from the reference (seeded noise on its weights), so the log-ratios, the
masks and the loss all matter from the first step on."""

import dataclasses
import math
import re

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from tests.builders import TRL_LOSS_TYPES, preference_rows
from trainer.config import TrainingConfig, TrainRun
from trainer.data import normalize_rows
from trainer.losses import get_loss_spec, loss_names
from trainer.models import load_policy
from trainer.trainer import PreferenceConfig, PreferenceTrainer

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

STEPS = 3
# registry name -> (TRL loss_type, TRL loss_weights)
TRL_LOSSES = {name: ([name], None) for name in TRL_LOSS_TYPES} | {
    "rpo": (["sigmoid", "sft"], [1.0, 1.0]),  # TRL's paper index: RPO = sigmoid + sft, alpha = 1
    "0.8*sigmoid+0.2*bco_pair+sft": (["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]),  # TRL's MPO example
}
# DPOConfig fields the two trainers must share (PreferenceConfig.from_training sets them; TRL's defaults differ for some)
SHARED_FIELDS = (
    "beta",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "optim",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "max_length",
    "seed",
    "logging_steps",
    "save_strategy",
    "report_to",
    "use_cpu",
    "bf16",
    "dataloader_num_workers",
    "disable_tqdm",
    "disable_dropout",
)


def test_every_trl_loss_type_is_registered_and_compared():
    """The loss types the installed TRL documents for ``DPOConfig.loss_type``: all in the registry, all compared."""
    help_text = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"].metadata["help"]
    trl_types = set(re.findall(r"`'(\w+)'`", help_text))
    assert len(trl_types) >= 15
    assert trl_types <= set(loss_names()) and trl_types <= set(TRL_LOSSES)


def _dataset() -> Dataset:
    _, rows = normalize_rows(preference_rows(16), None)
    return Dataset.from_list(rows).remove_columns(["chosen_span", "rejected_span"])


@pytest.fixture(scope="module")
def moved_policy_state() -> dict[str, torch.Tensor]:
    """The tiny model's weights plus seeded Gaussian noise (std 0.1, five times the init scale): a policy away from
    the reference that prefers most rejected answers (DPO margins x between -4 and +3 nats)."""
    model, _ = load_policy("tiny")
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _policy(state):
    model, tokenizer = load_policy("tiny")
    model.load_state_dict(state)
    return model, tokenizer


def _train(trainer) -> list[float]:
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _losses_of_both(tmp_path, state, loss: str) -> tuple[list[float], list[float], DPOTrainer]:
    ours_args = PreferenceConfig.from_training(
        # float32: the parity is of the loss math; bf16 autocast (dtype auto on a GPU) adds noise
        TrainingConfig(
            model="tiny", loss=loss, learning_rate=1e-4, batch_size=2, max_steps=STEPS, dtype="float32"
        ),
        TrainRun(data="-", output_dir=str(tmp_path / "ours"), save_model=False),
    )
    model, tokenizer = _policy(state)
    ours = PreferenceTrainer(
        model=model,
        ref_model=load_policy("tiny")[0],
        args=ours_args,
        train_dataset=_dataset(),
        processing_class=tokenizer,
    )
    loss_types, weights = TRL_LOSSES[loss]
    trl_args = DPOConfig(
        output_dir=str(tmp_path / "trl"),
        loss_type=loss_types,
        loss_weights=weights,
        label_smoothing=get_loss_spec(loss).params().get("label_smoothing", 0.0),
        **{name: getattr(ours_args, name) for name in SHARED_FIELDS},
    )
    model, tokenizer = _policy(state)
    peer = DPOTrainer(
        model=model,
        ref_model=load_policy("tiny")[0],
        args=trl_args,
        train_dataset=_dataset(),
        processing_class=tokenizer,
    )
    first = next(iter(ours.get_train_dataloader()))
    assert torch.equal(first["input_ids"], next(iter(peer.get_train_dataloader()))["input_ids"])
    return _train(ours), _train(peer), peer


@pytest.mark.parametrize("loss", sorted(TRL_LOSSES))
def test_same_loss_as_trl_at_every_step(tmp_path, moved_policy_state, loss):
    ours, theirs, peer = _losses_of_both(tmp_path, moved_policy_state, loss)
    assert len(ours) == len(theirs) == STEPS
    for step, (mine, trl_loss) in enumerate(zip(ours, theirs, strict=True), start=1):
        assert mine == pytest.approx(trl_loss, rel=1e-6, abs=1e-5), (
            f"{loss} step {step}: {mine} vs TRL {trl_loss}"
        )
    assert len(set(ours)) == STEPS  # the optimizer moved the policy between the compared steps
    if loss == "sigmoid":  # ln 2 at the reference, whatever the code does
        assert abs(ours[0] - math.log(2)) > 0.01


def test_the_policy_starts_away_from_the_reference(tmp_path, moved_policy_state):
    policy, tokenizer = _policy(moved_policy_state)
    reference, _ = load_policy("tiny")
    args = PreferenceConfig.from_training(
        TrainingConfig(model="tiny", batch_size=8),
        TrainRun(data="-", output_dir=str(tmp_path), save_model=False),
    )
    trainer = PreferenceTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=_dataset(), processing_class=tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        logps = [
            trainer._sequence_logps(
                m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                batch["input_ids"],
                batch["completion_mask"],
            )
            for m in (policy, reference)
        ]
    ratios = logps[0] - logps[1]  # 0 for every completion at initialisation
    margins = ratios[:8] - ratios[8:]
    assert ratios.abs().mean() > 1.0 and margins.abs().mean() > 1.0
