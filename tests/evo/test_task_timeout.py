"""The task time limit, for real: a candidate whose Ray task hangs is force-cancelled after
``resources.task_timeout_s``, recorded ``failed`` with the reason, and the run goes on to train the next one.

The hang is a named pipe where the worker writes its pid (``candidates/<id>/worker.pid``): opening it for writing
blocks until a reader comes, and none does."""

import os
import time

import pytest

from evo.archive import Archive
from tests.builders import launch

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def test_a_hanging_candidate_is_cancelled_recorded_and_the_run_goes_on(tmp_path, recipe):
    run_dir = tmp_path / "run"
    hang = run_dir / "candidates" / "1"  # the DPO baseline, the run's first candidate
    hang.mkdir(parents=True)
    os.mkfifo(hang / "worker.pid")
    limit = (
        40  # the next candidate starts in a fresh worker (the hung one was killed): imports take ~6 s of it
    )
    config = recipe(
        preset="tiny",
        generations=1,
        population=1,
        proposers={"llm": False},
        resources={"task_timeout_s": limit},
    )
    started = time.monotonic()
    proc = launch(["--config", str(config), "--run-dir", str(run_dir)], env={"COLUMNS": "300"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = Archive(run_dir / "archive.sqlite").all()
    baseline, candidate = rows
    assert (baseline.name, baseline.status) == ("dpo", "failed")
    assert baseline.reason == f"exceeded the time limit of {limit}s"
    assert candidate.status == "done" and candidate.fitness is not None, candidate.reason  # trained after it
    assert time.monotonic() - started < 600
    assert (
        f"candidate 1 (dpo): failed: exceeded the time limit of {limit}s" in proc.stderr
    )  # the progress line
