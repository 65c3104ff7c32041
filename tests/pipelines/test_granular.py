"""Granular TDPO from the masked-region format: validation, training, artefacts, resumption."""

import json

import pytest

from trainer.data import DataFormatError
from trainer.pipelines import granular
from trainer.pipelines.state import PipelineState

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

FAST = ["--max-steps", "2", "--batch-size", "4", "--max-length", "96"]


def test_validates_trains_and_skips_on_a_rerun(tmp_path, granular_file, monkeypatch):
    out = tmp_path / "granular"
    argv = ["--data", str(granular_file), "--model", "tiny", "--output-dir", str(out)] + FAST
    assert granular.main(argv) == 0
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary == {
        "rows": 16,
        "span_in_chosen": 8,
        "span_in_rejected": 8,
        "mean_span_chars": 1.62,  # 26 / 16: the spans are the numbers 7..21 (rejected) and 3..17 (chosen)
        "spans_beyond_max_length": 0,
    }
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["metrics"]["loss"] == "granular_tdpo" and metrics["steps"] == 2
    assert (out / "model" / "model.safetensors").exists()
    assert PipelineState(out, json.loads((out / "state.json").read_text())["config"]).done("train")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(granular, "train", must_not_run)
    monkeypatch.setattr(granular, "summarize", must_not_run)
    assert granular.main(argv) == 0


def test_spans_beyond_max_length_are_counted(granular_file):
    summary = granular.summarize(granular_file, "tiny", max_length=12)
    assert summary["spans_beyond_max_length"] == 16  # every row: 12 tokens end inside the prompt


def test_a_bad_flag_stops_before_training(tmp_path, granular_file, monkeypatch):
    rows = json.loads(granular_file.read_text())
    rows[3]["masked_region"][2] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows))
    monkeypatch.setattr(granular, "train", lambda *a, **k: pytest.fail("trained on invalid data"))
    with pytest.raises(DataFormatError, match="row 3: field 'masked_region' flag must be 1"):
        granular.main(["--data", str(bad), "--model", "tiny", "--output-dir", str(tmp_path / "out")])
