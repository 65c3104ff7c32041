"""A run SIGKILLed mid-generation resumes: nothing lost, nothing finished trained twice, archive consistent."""

import os
import signal
import subprocess
import sys
import time

import pytest

from evo.archive import Archive
from evo.status import FINAL
from tests.builders import launch

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def _snapshot(path):
    archive = Archive(path)
    try:
        return archive.all()
    finally:
        archive.close()


def test_sigkill_mid_generation_then_resume(tmp_path, recipe):
    config = recipe(preset="tiny", generations=2, population=2, proposers={"llm": False})
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evo.launch", "--config", str(config), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    archive_path = run_dir / "archive.sqlite"
    deadline = time.monotonic() + 900
    before = []
    while time.monotonic() < deadline:
        time.sleep(1.0)
        assert proc.poll() is None, "the run finished before it could be killed"
        if not archive_path.exists():
            continue
        before = _snapshot(archive_path)
        done = [c for c in before if c.status == "done"]
        training = [c for c in before if c.status == "training" and c.generation >= 1 and c.attempts >= 1]
        if len(done) >= 2 and training:
            break
    else:
        raise AssertionError("the run never reached a state with finished and in-flight candidates")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {c.id: c for c in before if c.status in FINAL}
    # "training" rows were in flight (attempts >= 1) or validated and queued for a free slot (attempts == 0)
    in_flight_before = {c.id: c for c in before if c.status == "training"}
    assert any(c.attempts >= 1 for c in in_flight_before.values())

    resumed = launch(["--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    after = {c.id: c for c in _snapshot(archive_path)}
    assert set(after) >= set(finished_before) | set(in_flight_before)  # no candidate lost
    assert len(after) == 1 + 2 * 2  # the DPO baseline + generations x population, nothing proposed twice
    assert all(c.status in FINAL for c in after.values())
    for cid, old in finished_before.items():  # finished work is never redone
        new = after[cid]
        assert (new.status, new.fitness, new.attempts, new.updated_at) == (
            old.status,
            old.fitness,
            old.attempts,
            old.updated_at,
        )
    for cid, old in in_flight_before.items():  # interrupted work was rescheduled exactly once more
        assert after[cid].attempts == old.attempts + 1 and after[cid].status in ("done", "failed")
    for generation in (1, 2):
        assert len([c for c in after.values() if c.generation == generation]) == 2
