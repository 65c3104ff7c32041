"""Resumable runs: finished steps are skipped, a changed configuration is refused, writes are atomic."""

import json

import pytest

from trainer.pipelines.state import ConfigMismatchError, PipelineState, read_jsonl, write_jsonl


def test_a_recorded_step_is_not_run_again(tmp_path):
    calls = []
    state = PipelineState(tmp_path, {"model": "tiny"})
    assert state.run("a", lambda: calls.append("a") or {"rows": 3})["rows"] == 3
    reopened = PipelineState(tmp_path, {"model": "tiny"})
    assert reopened.done("a") and not reopened.done("b")
    assert reopened.run("a", lambda: calls.append("again") or {})["rows"] == 3
    assert calls == ["a"]
    stored = json.loads((tmp_path / "state.json").read_text())
    assert stored["steps"]["a"]["rows"] == 3 and "finished_at" in stored["steps"]["a"]


def test_a_failing_step_is_not_recorded(tmp_path):
    state = PipelineState(tmp_path, {})

    def boom():
        raise RuntimeError("cut off")

    with pytest.raises(RuntimeError, match="cut off"):
        state.run("a", boom)
    assert not PipelineState(tmp_path, {}).done("a")


def test_another_configuration_is_refused_but_extendable_keys_may_change(tmp_path):
    PipelineState(tmp_path, {"model": "tiny", "iterations": 1}, extendable=("iterations",))
    PipelineState(tmp_path, {"model": "tiny", "iterations": 3}, extendable=("iterations",))
    with pytest.raises(ConfigMismatchError, match=r"model: 'tiny' -> 'other'"):
        PipelineState(tmp_path, {"model": "other", "iterations": 3}, extendable=("iterations",))
    with pytest.raises(ConfigMismatchError, match="iterations"):
        PipelineState(tmp_path, {"model": "tiny", "iterations": 4})


def test_jsonl_round_trip_leaves_no_scratch_files(tmp_path):
    rows = [{"prompt": "ü", "n": 1}, {"prompt": "b", "n": 2}]
    assert write_jsonl(tmp_path / "x.jsonl", rows) == 2
    assert read_jsonl(tmp_path / "x.jsonl") == rows
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]
