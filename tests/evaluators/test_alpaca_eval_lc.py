"""AlpacaEval's length-controlled win rate needs `df_gamed.csv`: a local file given as an option, or the Hugging Face
cache; without either (and offline) the evaluator fails before any generation, naming the file and the option."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from evaluators.alpaca_eval import GAMED_FILE, AlpacaEvalSpec, _metrics, evaluate, lc_gamed_file, main
from evaluators.fitness import FitnessUnavailable
from evaluators.judge import JudgeConfig


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """No network to the Hub and an empty Hugging Face cache."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _spec(tmp_path: Path, shared_data: Path, **fields) -> AlpacaEvalSpec:
    return AlpacaEvalSpec(
        judge=JudgeConfig(model="judge", base_url="http://127.0.0.1:9/v1", max_tokens=0),
        output_dir=str(tmp_path / "out"),
        reference_outputs=str(shared_data / "alpaca_eval" / "gpt4_1106_preview_outputs.json"),
        max_instances=3,
        max_new_tokens=4,
        **fields,
    )


def test_without_df_gamed_the_evaluator_fails_before_any_generation(
    tmp_path, shared_data, offline_hub, capsys
):
    with pytest.raises(FitnessUnavailable) as failed:
        evaluate("tiny", _spec(tmp_path, shared_data))
    message = str(failed.value)
    assert (
        GAMED_FILE in message
        and "--lc-gamed-file" in message
        and "fitness.alpaca_eval.lc_gamed_file" in message
    )
    assert not (tmp_path / "out").exists()  # no model loaded, no output generated, no judge asked

    with pytest.raises(SystemExit) as exited:
        main(
            [
                "--model",
                "tiny",
                "--output-dir",
                str(tmp_path / "cli"),
                "--judge-base-url",
                "http://127.0.0.1:9/v1",
            ]
        )
    assert (
        "--lc-gamed-file" in str(exited.value.code) and not (tmp_path / "cli" / "model_outputs.json").exists()
    )

    with pytest.raises(FitnessUnavailable, match="no file at"):
        lc_gamed_file(_spec(tmp_path, shared_data, lc_gamed_file=str(tmp_path / "missing.csv")))


def test_the_option_and_the_hugging_face_cache_are_used(tmp_path, shared_data, offline_hub, df_gamed):
    assert lc_gamed_file(_spec(tmp_path, shared_data, lc_gamed_file=str(df_gamed))) == df_gamed
    snapshot = (
        offline_hub / "datasets--tatsu-lab--alpaca_eval" / "snapshots" / ("a" * 40)
    )  # the Hub cache layout
    snapshot.mkdir(parents=True)
    shutil.copyfile(df_gamed, snapshot / GAMED_FILE)
    (offline_hub / "datasets--tatsu-lab--alpaca_eval" / "refs").mkdir()
    (offline_hub / "datasets--tatsu-lab--alpaca_eval" / "refs" / "main").write_text("a" * 40)
    assert lc_gamed_file(_spec(tmp_path, shared_data)) == snapshot / GAMED_FILE


def test_the_length_controlled_fit_reads_the_local_file_offline(tmp_path, offline_hub, df_gamed):
    rng = random.Random(1)
    annotations = []
    for i in range(40):  # the model wins with longer outputs, mostly
        output = "x" * rng.randint(10, 400)
        annotations.append(
            {
                "instruction": f"q{i}",
                "output_1": "y" * 200,
                "output_2": output,
                "generator_1": "gpt4_1106_preview",
                "generator_2": "model",
                "preference": 2.0 if (len(output) > 200) != (rng.random() < 0.3) else 1.0,
                "index": i,
                "annotator": "judge",
            }
        )
    metrics = _metrics(tmp_path / "weights", df_gamed)(annotations)
    assert "lc_error" not in metrics
    assert 0 < metrics["length_controlled_winrate"] < 100 and metrics["lc_standard_error"] >= 0
    assert metrics["win_rate"] == pytest.approx(100 * sum(a["preference"] == 2.0 for a in annotations) / 40)
