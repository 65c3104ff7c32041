"""``--wandb`` without a W&B key or without a network: the search logs offline into its run folder, says so in one
line with the ``wandb sync`` command, and ends normally; candidates' training curves come step by step."""

from __future__ import annotations

import socket

import pytest

from evo.archive import Archive
from evo.config import load_config
from evo.tracking import WandbTracker, train_key
from tests.builders import launch
from tests.evo.test_tracking import local_runs

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

KEY_SOURCES = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL")


def _wandb_home(tmp_path) -> dict[str, str]:
    home = tmp_path / "wandb-home"
    return {
        **{f"WANDB_{name}_DIR": str(home / name.lower()) for name in ("DATA", "CACHE", "CONFIG")},
        "NETRC": str(tmp_path / "no-netrc"),
        "COLUMNS": "400",
    }


def test_no_key_logs_offline_into_the_run_folder_and_the_run_ends_normally(tmp_path, recipe):
    run_dir = tmp_path / "run"
    config = recipe(
        preset="tiny", generations=1, population=1, proposers={"llm": False}
    )  # no LLM: not the point
    proc = launch(
        ["--config", str(config), "--wandb", "--run-dir", str(run_dir)],
        env=_wandb_home(tmp_path),
        unset=KEY_SOURCES,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (offline,) = local_runs(run_dir)
    assert offline.folder.parent == run_dir / "wandb"
    line = (
        "wandb: no W&B API key (set WANDB_API_KEY or run `wandb login`), so it logs offline to "
        f"{offline.folder}; upload later with:  wandb sync {offline.folder}"
    )
    assert line in proc.stdout
    assert "Discovered losses" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    archive = Archive(run_dir / "archive.sqlite")
    finished = [c for c in archive.all() if c.status == "done"]
    assert finished
    for candidate in finished:  # each trained candidate's curve, step by step, as its worker logged it
        curve = offline.series("train/step", train_key(candidate))
        assert curve == list(enumerate(candidate.metrics["losses"], start=1))
    assert [e.exit_code for e in offline.of("exit")] == [0]


def test_an_unreachable_wandb_host_logs_offline(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a loopback port that nothing listens on: the host "cannot be reached"
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name, value in _wandb_home(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    archive = Archive(run_dir / "archive.sqlite")
    said: list[str] = []
    with WandbTracker(load_config(preset="tiny"), run_dir, archive, notify=said.append) as tracker:
        assert tracker.run is not None and tracker.run.settings.mode == "offline"
    (line,) = said
    assert line.startswith("wandb: 127.0.0.1 cannot be reached (") and "wandb sync " in line
    assert len(local_runs(run_dir)) == 1


def test_live_steps_are_logged_once(tmp_path, monkeypatch):
    """Steps streamed while a candidate trains are not replayed from its metrics when its result comes."""
    for name, value in _wandb_home(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    archive = Archive(run_dir / "archive.sqlite")
    streamed = archive.add(0, "baseline", "training", name="dpo")
    replayed = archive.add(0, "baseline", "training", name="spin")
    with WandbTracker(load_config(preset="tiny"), run_dir, archive) as tracker:
        tracker.on_steps(archive.get(streamed), [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}])
        tracker.on_steps(archive.get(streamed), [{"step": 3, "loss": 0.5}])
        archive.update(streamed, status="done", fitness=0.5, metrics={"losses": [0.7, 0.6, 0.5]})
        tracker.on_result(archive.get(streamed))
        archive.update(replayed, status="done", fitness=0.4, metrics={"losses": [0.9, 0.8]})
        tracker.on_result(archive.get(replayed))
    (run,) = local_runs(run_dir)
    assert run.series("train/step", train_key(archive.get(streamed))) == [(1, 0.7), (2, 0.6), (3, 0.5)]
    assert run.series("train/step", train_key(archive.get(replayed))) == [(1, 0.9), (2, 0.8)]


@pytest.mark.parametrize("broken", ["on_steps", "on_result"])
def test_a_wandb_failure_mid_run_turns_wandb_off_not_the_search(tmp_path, monkeypatch, broken):
    for name, value in _wandb_home(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    archive = Archive(tmp_path / "run" / "archive.sqlite")
    cid = archive.add(0, "baseline", "done", name="dpo", fitness=0.5, metrics={"losses": [0.7]})
    said: list[str] = []
    with WandbTracker(load_config(preset="tiny"), tmp_path / "run", archive, notify=said.append) as tracker:
        tracker.run.finish()  # the run is gone under the tracker: the next log raises inside wandb
        if broken == "on_steps":
            tracker.on_steps(archive.get(cid), [{"step": 1, "loss": 0.7}])
        else:
            tracker.logged.clear()
            tracker.on_result(archive.get(cid))
        assert tracker.run is None
        tracker.on_result(archive.get(cid))  # later calls are no-ops
    assert len(said) == 1 and said[0].startswith("wandb stopped logging (")
