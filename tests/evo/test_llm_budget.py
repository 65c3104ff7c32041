"""A spent LLM budget (``--max-llm-cost``) against a scripted loopback LLM with prices: a mixed run goes on with
the symbolic proposer; an LLM-only run ends proposing cleanly (the candidate in flight finishes, the leaderboard
prints, exit 0), and resuming it finishes at once with the same message and no new LLM call."""

import pytest

from evo.archive import Archive
from tests.builders import launch
from tests.evo.fake_llm import FakeLLM

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

# Each scripted reply costs 100 tokens in x $0.01/1k + 50 out x $0.02/1k = $0.002.
PRICES = {"price_per_1k_input": 0.01, "price_per_1k_output": 0.02, "model": "fake", "timeout_s": 5.0}
GARBAGE = {"reply": "I would rather talk about the weather."}
WIDE = {"COLUMNS": "300"}  # rich wraps at the terminal width: keep each message on one line


def test_a_mixed_run_goes_on_with_the_symbolic_proposer_after_the_cap(tmp_path, recipe):
    with FakeLLM([], default=GARBAGE) as server:
        config = recipe(
            preset="tiny",
            generations=1,
            population=3,
            llm={"base_url": server.base_url, "max_cost_usd": 0.001, **PRICES},
        )
        run_dir = tmp_path / "run"
        proc = launch(["--config", str(config), "--run-dir", str(run_dir)], env=WIDE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(server.requests) == 1  # the first answer spent the budget
    rows = Archive(run_dir / "archive.sqlite").all()
    assert [(c.proposer, c.status) for c in rows] == [
        ("baseline", "done"),
        ("llm", "unparseable"),
        ("symbolic", "done"),
        ("symbolic", "done"),
    ]
    assert rows[1].llm_cost == 0.002
    assert "llm proposer disabled: the LLM budget of $0.0010 is spent ($0.0020)" in proc.stdout
    assert "proposing ended" not in proc.stdout


def test_an_llm_only_run_ends_cleanly_and_its_resume_finishes_at_once(tmp_path, recipe):
    ended = "proposing ended: no proposer is left (llm: the LLM budget of $0.0030 is spent ($0.0040))"
    with FakeLLM([], default=GARBAGE) as server:
        config = recipe(
            preset="tiny",
            generations=2,
            population=4,
            proposers={"symbolic": False},
            llm={"base_url": server.base_url, "max_cost_usd": 0.003, **PRICES},
        )
        run_dir = tmp_path / "run"
        proc = launch(["--config", str(config), "--run-dir", str(run_dir)], env=WIDE)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert len(server.requests) == 2
        assert ended in proc.stdout and "Discovered losses" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr
        archive = Archive(run_dir / "archive.sqlite")
        rows = archive.all()
        assert [(c.proposer, c.status) for c in rows] == [
            ("baseline", "done"),
            ("llm", "unparseable"),
            ("llm", "unparseable"),
        ]  # the baseline in flight finished
        assert archive.note("proposing_ended").startswith(ended)
        archive.close()

        again = launch(["--resume", str(run_dir)], env=WIDE)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert len(server.requests) == 2 and ended in again.stdout
    assert len(Archive(run_dir / "archive.sqlite").all()) == 3
