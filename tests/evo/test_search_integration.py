"""The real thing on the tiny preset: 2 generations x 2 candidates with real Ray, the real sandbox, the real
trainer and the real llama.cpp server serving the embedded GGUF as the proposer LLM."""

import pytest

from evo.archive import Archive
from evo.status import FINAL
from tests.builders import launch

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def test_two_generations_with_the_embedded_llm(tmp_path):
    run_dir = tmp_path / "run"
    proc = launch(
        ["--preset", "tiny", "--generations", "2", "--population", "2", "--run-dir", str(run_dir)],
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "proposer LLM: llama.cpp at http://127.0.0.1:" in proc.stdout
    assert "Discovered losses" in proc.stdout

    rows = Archive(run_dir / "archive.sqlite").all()
    assert len(rows) == 1 + 2 * 2
    assert rows[0].name == "dpo" and rows[0].status == "done"
    proposers = {r.proposer for r in rows[1:]}
    assert proposers == {"llm", "symbolic"}  # the bandit gave both a turn
    for row in rows:
        assert row.status in FINAL
        if row.status == "done":
            assert row.fitness is not None and row.stderr is not None and row.n
            assert row.metrics["steps"] == 6 and row.timings["train_s"] > 0
        else:
            assert row.reason, f"candidate {row.id} ({row.status}) has no reason"
    llm_rows = [r for r in rows if r.proposer == "llm"]
    assert all(r.llm_tokens_in > 0 and r.llm_tokens_out > 0 for r in llm_rows)
    assert (run_dir / "config.yaml").exists() and (run_dir / "llama_server.log").exists()
