"""The circuit breaker: candidates that keep failing with one infrastructure error stop the run with a clear
message, and the run resumes after the fix with those candidates trained again; the bandit rewards failures 0."""

import pytest
import yaml

from evo.archive import Archive
from evo.bandit import reward
from evo.circuit_breaker import CircuitBreaker, CircuitOpen
from evo.leaderboard import run_notes
from tests.builders import launch

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def test_a_series_of_one_infrastructure_error_opens_the_breaker():
    breaker = CircuitBreaker(limit=3)
    breaker.record(1, "failed", "FileNotFoundError", "FileNotFoundError: /data/x")
    breaker.record(2, "done", None, None)  # a success starts the count again
    breaker.record(3, "failed", "FileNotFoundError", "FileNotFoundError: /data/x")
    breaker.record(4, "failed", "OutOfMemoryError", "OutOfMemoryError: CUDA")  # another class: a new series
    breaker.record(5, "failed", "CandidateDiverged", "training diverged")  # the loss's own fault breaks it
    breaker.record(6, "failed", "OutOfMemoryError", "OutOfMemoryError: CUDA")
    breaker.record(7, "failed", "OutOfMemoryError", "OutOfMemoryError: CUDA out of memory\nTraceback ...")
    with pytest.raises(CircuitOpen) as opened:
        breaker.record(8, "failed", "OutOfMemoryError", "OutOfMemoryError: CUDA out of memory\nTraceback ...")
    assert opened.value.candidate_ids == (6, 7, 8)
    assert str(opened.value).startswith(
        "3 candidates in a row (6, 7, 8) failed with OutOfMemoryError: CUDA out of"
    )
    never = CircuitBreaker(limit=0)
    for cid in range(10):
        never.record(cid, "failed", "OSError", "OSError")


def test_run_notes_are_kept_in_the_archive_and_shown_under_the_leaderboard(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    archive.set_note("disabled_proposers", {"llm": "the LLM budget of $1.0000 is spent ($1.2000)"})
    archive.set_note("circuit_breaker", "3 candidates in a row (1, 2, 3) failed with OSError: disk full")
    archive.close()
    archive = Archive(tmp_path / "a.sqlite")  # persisted
    assert run_notes(archive) == [
        "llm proposer disabled: the LLM budget of $1.0000 is spent ($1.2000)",
        "stopped by the circuit breaker: 3 candidates in a row (1, 2, 3) failed with OSError: disk full",
    ]
    archive.set_note("circuit_breaker", None)
    assert archive.note("circuit_breaker") is None and len(run_notes(archive)) == 1


def test_the_bandit_rewards_a_failure_with_nothing():
    assert reward("failed", None, None) == 0.0
    assert reward("training", None, None) == 0.5 and reward("done", 0.3, None) == 1.0


def test_repeated_failures_stop_the_run_which_resumes_after_the_fix(tmp_path, recipe):
    missing = (
        tmp_path / "no-such-heldout.jsonl"
    )  # every candidate trains, then the proxy fitness cannot read this
    config = recipe(
        preset="tiny",
        generations=1,
        population=3,
        proposers={"llm": False},
        fitness={"kind": "proxy", "proxy": {"data": str(missing)}},
    )
    run_dir = tmp_path / "run"
    proc = launch(["--config", str(config), "--run-dir", str(run_dir)], env={"COLUMNS": "300"})
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 candidates in a row (1, 2, 3) failed with FileNotFoundError" in proc.stdout
    assert f"continue with  python -m evo.launch --resume {run_dir}" in proc.stdout
    archive = Archive(run_dir / "archive.sqlite")
    rows = archive.all()
    # Not the losses' fault: the three are kept for the resumed run, like the fourth, in flight when it stopped.
    assert [c.status for c in rows] == ["training"] * 4
    assert all("stopped by the circuit breaker" in c.reason for c in rows[:3]) and rows[3].reason is None
    assert "FileNotFoundError" in archive.note("circuit_breaker")
    archive.close()

    saved = yaml.safe_load(
        (run_dir / "config.yaml").read_text()
    )  # the fix: score on the run's own held-out pairs
    saved["fitness"]["proxy"] = {}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    again = launch(["--resume", str(run_dir)], env={"COLUMNS": "300"})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    archive = Archive(run_dir / "archive.sqlite")
    assert [c.status for c in archive.all()] == ["done"] * 4  # the three again, and the generation's last one
    assert archive.note("circuit_breaker") is None
