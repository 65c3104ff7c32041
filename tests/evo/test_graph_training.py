"""The search trains the graph the sandbox traced, never the archived source, and stops a loss that turns.

The tamper test runs the search as a user would (``python -m evo.launch`` on the tiny preset, a scripted LLM): the
candidate validates and trains; then its archived ``code`` is replaced by source that would write a canary file and
computes another loss, and the run is resumed as if it had been killed while the candidate trained. The resumed
training follows the stored graph (the same losses, step for step) and no canary appears. Rows archived before
graphs were stored are validated again on resume, in the sandbox, from their source.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest
from rich.console import Console

from evo.archive import Archive
from evo.config import load_config
from evo.job import CandidateJob, run_job
from evo.loop import Search
from evo.session import build_proposers
from evo.status import Status
from evo.synthetic import write_synthetic_pairs
from sandbox.executor import SandboxPool
from tests.builders import launch
from tests.evo.fake_llm import FakeLLM
from tests.evo.graphs import traced_graph, validated_graph

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

SQUARED_HINGE = (
    "import torch\n"
    "def loss_fn(pc, pr, rc, rr, beta):\n"
    "    margin = beta * ((pc - pr) - (rc - rr))\n"
    "    return torch.relu(1.0 - margin) ** 2\n"
)
SHIFTED_LOGISTIC = (
    "import torch.nn.functional as F\n"
    "def loss_fn(pc, pr, rc, rr, beta):\n"
    "    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)) - 0.5)\n"
)
DPO = (
    "import torch.nn.functional as F\n"
    "def loss_fn(pc, pr, rc, rr, beta):\n"
    "    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))\n"
)
# DPO while the policy is the reference (every margin 0, as on the first step), DPO reversed once it moved.
TURNS_ONCE_MOVED = (
    "import torch\n"
    "import torch.nn.functional as F\n"
    "def loss_fn(pc, pr, rc, rr, beta):\n"
    "    z = beta * ((pc - pr) - (rc - rr))\n"
    "    return torch.where(z.abs() < 0.001, -F.logsigmoid(z), -F.logsigmoid(-z))\n"
)


def _tampered(canary) -> str:
    """Source that writes the canary if it ever runs, and computes DPO instead of the squared hinge."""
    return f"open({str(canary)!r}, 'w').write('ran')\n" + DPO


@pytest.fixture
def make_job(tmp_path):
    config = load_config(preset="tiny")
    train, heldout = write_synthetic_pairs(tmp_path / "data", 8)

    def make(patience: int, **fields) -> CandidateJob:
        training = dataclasses.replace(config.training, direction_patience=patience)
        base = dict(
            candidate_id=1,
            name="c",
            work_dir=str(tmp_path / "work"),
            train_path=str(train),
            heldout_path=str(heldout),
            training=training,
            fitness=config.fitness,
        )
        return CandidateJob(**{**base, **fields})

    return make


def test_a_loss_that_turns_once_the_policy_moved_is_stopped(make_job, sandbox_pool):
    result = run_job(make_job(3, graph=traced_graph(TURNS_ONCE_MOVED, sandbox_pool)))
    assert result.status == Status.FAILED, result.reason
    assert result.reason.startswith(
        "direction check: the loss turned against the preference: on 3 batches in a row (up to batch 4)"
    ), result.reason
    dpo = run_job(make_job(1, graph=validated_graph(DPO, sandbox_pool)))  # stopped by a single reversed batch
    assert dpo.status == Status.DONE and dpo.metrics["steps"] == 6, dpo.reason


def test_resumed_training_follows_the_stored_graph_not_the_archived_code(tmp_path, recipe):
    canary = tmp_path / "canary"
    reply = {
        "reply": json.dumps({"thought": "a squared hinge", "name": "squared_hinge", "code": SQUARED_HINGE})
    }
    run_dir = tmp_path / "run"
    with FakeLLM([reply]) as server:
        config = recipe(
            preset="tiny",
            generations=1,
            population=1,
            baselines=[],
            proposers={"symbolic": False, "repair_rounds": 0},
            llm={"base_url": server.base_url, "model": "fake"},
            training={"dtype": "float32"},  # exact values below: no bf16 autocast on CPUs that have it
        )
        first = launch(["--config", str(config), "--run-dir", str(run_dir)])
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        archive = Archive(run_dir / "archive.sqlite")
        (trained,) = archive.all()
        assert trained.status == Status.DONE and trained.graph is not None, trained.reason
        missing = archive.isolation_missing()  # recorded, and said in the log when the sandbox ran weaker
        assert missing is not None and ("WITHOUT" in (run_dir / "search.log").read_text()) == bool(missing)
        # The run "was killed" while the candidate trained, and meanwhile its source was replaced; two rows from an
        # archive written before graphs were stored are waiting too: one valid, one that writes the canary.
        archive.update(trained.id, status=Status.TRAINING, code=_tampered(canary))
        old = archive.add(1, "llm", Status.TRAINING, name="old_shifted", code=SHIFTED_LOGISTIC, attempts=1)
        old_forged = archive.add(
            1, "llm", Status.TRAINING, name="old_forged", code=_tampered(canary), attempts=1
        )
        archive.close()
        resumed = launch(["--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    archive = Archive(run_dir / "archive.sqlite")
    again = archive.get(trained.id)
    assert again.status == Status.DONE and again.attempts == trained.attempts + 1, again.reason
    assert again.metrics["losses"][0] == pytest.approx(
        1.0
    )  # the squared hinge at margin 0; DPO would be 0.693
    assert again.metrics["losses"] == pytest.approx(trained.metrics["losses"], rel=1e-5)
    assert not canary.exists()
    revalidated = archive.get(old)
    assert revalidated.status == Status.DONE and revalidated.graph is not None, revalidated.reason
    assert revalidated.metrics["losses"][0] == pytest.approx(0.974, abs=1e-3)  # softplus(0.5) at margin 0
    forged = archive.get(old_forged)
    assert forged.status == Status.INVALID and forged.reason.startswith("[policy]") and forged.graph is None
    archive.close()


def _session(run_dir, missing: tuple[str, ...], monkeypatch) -> str:
    """Start one session of a search on a machine whose sandbox lacks ``missing``; what its terminal showed."""
    monkeypatch.setattr(SandboxPool, "isolation_missing", property(lambda pool: missing))
    config = load_config(preset="tiny", overrides={"proposers": {"llm": False}})
    search = Search(config, run_dir, build_proposers(config, None, seed=0))
    terminal = io.StringIO()
    search.progress.console = Console(file=terminal, width=200)
    try:
        search._record_isolation()
    finally:
        search.close()
    return terminal.getvalue()


def test_a_sandbox_without_some_isolation_is_recorded_and_said(tmp_path, monkeypatch, caplog):
    """This machine gives the sandbox every property; a machine that does not is simulated at the pool's report."""
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="evo"):
        shown = _session(run_dir, ("seccomp", "pid_namespace"), monkeypatch)
    assert "run WITHOUT seccomp, pid_namespace on this machine" in shown
    assert any(
        "WITHOUT seccomp, pid_namespace" in r.getMessage() for r in caplog.records
    )  # search.log's logger
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evo"):
        shown = _session(run_dir, (), monkeypatch)  # resumed on a machine with full isolation
    assert "an earlier session of this run validated WITHOUT pid_namespace, seccomp" in shown
    archive = Archive(run_dir / "archive.sqlite")
    assert archive.isolation_missing() == ("pid_namespace", "seccomp")
    archive.close()
