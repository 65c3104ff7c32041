"""Every fixed method as a search baseline: one signature, trains from the same pairs, resumable."""

import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest

from evaluators.verifiable_families import check
from tests.builders import read_jsonl
from trainer.config import TrainingConfig
from trainer.losses import loss_names
from trainer.pipelines import baselines
from trainer.pipelines.baselines import BASELINES, LOSS_BASELINES, MethodOptions, run_baseline

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

FAST = TrainingConfig(model="tiny", max_steps=1, batch_size=4, max_length=96)
FAST_OPTIONS = MethodOptions(max_new_tokens=8, sampling_batch_size=16)


def _trained_with(checkpoint: str) -> str:
    return json.loads((Path(checkpoint) / "metrics.json").read_text())["metrics"]["loss"]


def test_every_baseline_has_the_documented_signature():
    assert {"dpo", "spin", "spa", "tdpo2", "aepo_dpo"} <= set(BASELINES)
    for function in BASELINES.values():
        assert list(inspect.signature(function).parameters) == [
            "name",
            "training",
            "train_pairs_path",
            "output_dir",
            "options",
        ]
    assert set(LOSS_BASELINES.values()) <= set(loss_names())


def test_unknown_names_and_method_options_are_errors(tmp_path, verifiable_pairs_file):
    with pytest.raises(KeyError, match="unknown baseline 'dpo2'"):
        run_baseline("dpo2", FAST, str(verifiable_pairs_file), str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown method options \['max_steps'\]"):
        MethodOptions.from_dict({"max_steps": 3})  # a training setting: TrainingConfig's, not a method's


@pytest.mark.parametrize(("name", "loss"), [("dpo", "sigmoid"), ("tdpo2", "tdpo2")])
def test_loss_baselines_train_once(tmp_path, verifiable_pairs_file, monkeypatch, name, loss):
    checkpoint = run_baseline(name, FAST, str(verifiable_pairs_file), str(tmp_path / name), FAST_OPTIONS)
    assert checkpoint == str(tmp_path / name / "model") and _trained_with(checkpoint) == loss
    monkeypatch.setattr(baselines, "train", lambda *a, **k: pytest.fail("trained again"))
    assert (
        run_baseline(name, FAST, str(verifiable_pairs_file), str(tmp_path / name), FAST_OPTIONS) == checkpoint
    )


def test_spin_uses_the_chosen_responses_as_sft_answers(tmp_path, verifiable_pairs_file):
    checkpoint = run_baseline("spin", FAST, str(verifiable_pairs_file), str(tmp_path), FAST_OPTIONS)
    assert checkpoint == str(tmp_path / "spin" / "iter_1" / "model") and _trained_with(checkpoint) == "spin"
    pairs = read_jsonl(verifiable_pairs_file)
    sft = read_jsonl(tmp_path / "sft.jsonl")
    assert [(r["prompt"], r["completion"]) for r in sft] == [
        (p["prompt"], p["chosen"][0]["content"]) for p in pairs
    ]
    assert len(read_jsonl(tmp_path / "spin" / "iter_1" / "generated.jsonl")) == len(pairs)  # one sample each


def test_spa_splits_seed_pairs_from_unlabelled_prompts(tmp_path, verifiable_pairs_file):
    options = replace(FAST_OPTIONS, seed_fraction=0.25)
    checkpoint = run_baseline("spa", FAST, str(verifiable_pairs_file), str(tmp_path), options)
    assert checkpoint == str(tmp_path / "spa" / "iter_1" / "model") and _trained_with(checkpoint) == "spa"
    pairs = read_jsonl(verifiable_pairs_file)
    assert read_jsonl(tmp_path / "seed.jsonl") == pairs[:2]
    assert [r["prompt"] for r in read_jsonl(tmp_path / "prompts.jsonl")] == [p["prompt"] for p in pairs[2:]]
    assert len(read_jsonl(tmp_path / "spa" / "iter_1" / "samples.jsonl")) == 6


def test_aepo_dpo_samples_annotates_with_the_checkers_and_trains_dpo(
    tmp_path, verifiable_pairs_file, monkeypatch
):
    real_sampler = baselines.sample_responses

    def sampler_with_known_outcomes(model, conversations, options):
        # the tiny model's text rarely passes a checker: make the first sample pass and the second fail
        responses = real_sampler(model, conversations, options)
        return [["all lowercase words here", "SHOUTING"] + rows[2:] for rows in responses]

    monkeypatch.setattr(baselines, "sample_responses", sampler_with_known_outcomes)
    options = replace(FAST_OPTIONS, num_responses=4, num_annotations=4)
    checkpoint = run_baseline("aepo_dpo", FAST, str(verifiable_pairs_file), str(tmp_path), options)
    assert checkpoint == str(tmp_path / "model") and _trained_with(checkpoint) == "sigmoid"
    responses = read_jsonl(tmp_path / "responses.jsonl")
    assert len(responses) == 8 and all(
        len(r["responses"]) == 4 and r["family"] == "lowercase" for r in responses
    )
    aepo_pairs = read_jsonl(tmp_path / "aepo_pairs.jsonl")
    assert len(aepo_pairs) == 8
    for pair in aepo_pairs:
        assert check("lowercase", pair["chosen"][0]["content"], {})
        assert not check("lowercase", pair["rejected"][0]["content"], {})
    state = json.loads((tmp_path / "state.json").read_text())
    assert list(state["steps"]) == ["generate", "annotate", "train"]
    assert state["steps"]["annotate"]["annotations"] == 32
