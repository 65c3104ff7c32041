"""The shared trainer on the tiny model: every loss learns, the reference cache, divergence (parity with TRL is in
test_trl_parity.py)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from trainer.config import TrainingConfig, TrainRun
from trainer.data import load_preference_dataset
from trainer.losses import loss_names
from trainer.models import load_policy
from trainer.train import run_training
from trainer.trainer import CandidateDiverged, PreferenceConfig, PreferenceTrainer


def _training(**overrides) -> TrainingConfig:
    # float32: the cached reference log-probs (computed without autocast) equal the live ones to 1e-5 only there
    defaults = {"model": "tiny", "learning_rate": 1e-3, "batch_size": 4, "max_steps": 20, "dtype": "float32"}
    return TrainingConfig(**(defaults | overrides))


def _run(tmp_path, data, ref_cache_dir=None) -> TrainRun:
    return TrainRun(
        data=str(data), output_dir=str(tmp_path / "out"), ref_cache_dir=ref_cache_dir, save_model=False
    )


def _train(tmp_path, data, ref_cache_dir=None, loss_fn=None, **overrides):
    return run_training(_training(**overrides), _run(tmp_path, data, ref_cache_dir), loss=loss_fn)


def _first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def _data_for(loss: str, preference_file, spin_file, granular_file):
    if loss.startswith("spin"):
        return spin_file
    if loss.startswith("granular"):
        return granular_file
    return preference_file


@pytest.mark.parametrize("loss", loss_names())
def test_eight_steps_lower_the_training_loss(tmp_path, loss, preference_file, spin_file, granular_file):
    data = _data_for(loss, preference_file, spin_file, granular_file)
    result = _train(tmp_path, data, loss=loss, max_steps=8)
    assert result.steps == 8
    early, late = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert late < early, f"{loss}: loss went {early:.4f} -> {late:.4f}"


def test_reference_cache_is_computed_once_and_matches_the_live_reference(tmp_path, preference_file):
    # the reference is the tiny model moved by seeded noise, so the cached log-probs matter from the first step
    reference, tokenizer = load_policy("tiny")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    reference.save_pretrained(tmp_path / "reference")
    tokenizer.save_pretrained(tmp_path / "reference")
    cache, ref = str(tmp_path / "refcache"), str(tmp_path / "reference")
    first = _train(tmp_path, preference_file, ref_cache_dir=cache, ref_model=ref, max_steps=4)
    second = _train(tmp_path, preference_file, ref_cache_dir=cache, ref_model=ref, max_steps=4, loss="hinge")
    live = _train(tmp_path, preference_file, ref_model=ref, max_steps=4)
    cache = tmp_path / "refcache"
    assert first.metrics["ref_cache_hit"] is False and second.metrics["ref_cache_hit"] is True
    assert len(list(cache.glob("*.pt"))) == 1
    # same seed and data: cached and live reference give the same loss at every step, far from ln 2
    assert first.losses == pytest.approx(live.losses, abs=1e-5)
    assert abs(first.first_loss - math.log(2)) > 0.05


def test_cache_key_changes_with_the_data(tmp_path, preference_file, spin_file):
    cache = tmp_path / "refcache"
    _train(tmp_path, preference_file, ref_cache_dir=str(cache), max_steps=1)
    _train(tmp_path, preference_file, ref_cache_dir=str(cache), max_steps=1, max_length=40)
    _train(tmp_path, spin_file, ref_cache_dir=str(cache), max_steps=1)
    assert len(list(cache.glob("*.pt"))) == 2  # spin data tokenizes to the same pairs as the preference data
    with pytest.raises(ValueError, match="no train pairs left"):
        _train(tmp_path, preference_file, ref_cache_dir=str(cache), max_steps=1, max_length=8)


def test_non_finite_loss_raises_candidate_diverged(tmp_path, preference_file):
    def nan_loss(pc, pr, rc, rr, beta):
        return (pc - pr) * float("nan")

    with pytest.raises(CandidateDiverged, match="step 1: the loss is nan"):
        _train(tmp_path, preference_file, loss_fn=nan_loss)


def test_non_finite_gradient_raises_candidate_diverged(tmp_path, preference_file):
    def sqrt_at_zero(pc, pr, rc, rr, beta):
        return torch.sqrt((pc - pc.detach()) ** 2) - torch.nn.functional.logsigmoid(beta * (pc - pr))

    with pytest.raises(CandidateDiverged, match="step 1: the gradient norm is nan"):
        _train(tmp_path, preference_file, loss_fn=sqrt_at_zero)


def test_wrong_shape_is_a_clear_error(tmp_path, preference_file):
    def scalar_loss(pc, pr, rc, rr, beta):
        return (pc - pr).mean()

    with pytest.raises(ValueError, match=r"must return a tensor of shape \(4,\), got \(\)"):
        _train(tmp_path, preference_file, loss_fn=scalar_loss)


def test_granular_token_weights_follow_the_span(tmp_path, granular_file):
    _, dataset = load_preference_dataset(granular_file)
    model, tokenizer = load_policy("tiny")
    args = PreferenceConfig.from_training(_training(loss="granular"), _run(tmp_path, granular_file))
    trainer = PreferenceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    row = trainer.train_dataset[0]  # flag -1: the span "7" sits in the rejected answer
    assert 0 < sum(row["rejected_weights"]) < len(row["rejected_weights"])
    assert all(w == 1.0 for w in row["chosen_weights"])
    marked = [t for t, w in zip(row["rejected_ids"], row["rejected_weights"], strict=True) if w]
    assert "7" in tokenizer.decode(marked)
    batch = _first_batch(trainer)
    assert batch["token_weights"].shape == batch["input_ids"].shape
    assert torch.all(batch["token_weights"][batch["completion_mask"] == 0] == 0)


def test_cli_writes_a_loadable_checkpoint_and_metrics(tmp_path, preference_file):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.train",
            "--loss",
            "ipo",
            "--data",
            str(preference_file),
            "--model",
            "tiny",
            "--max-steps",
            "3",
            "--output-dir",
            str(out),
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ipo: 3 steps" in proc.stdout
    assert (out / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and len(metrics["losses"]) == 3
    AutoModelForCausalLM.from_pretrained(out)
