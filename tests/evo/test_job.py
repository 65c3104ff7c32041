"""One candidate's job, run in-process: a proposed loss's graph, a registry baseline, a pipeline baseline, a bad
loss, a tampered graph."""

import json

import pytest

from evo.config import load_config
from evo.job import CandidateJob, run_job
from evo.synthetic import write_synthetic_pairs
from tests.evo.graphs import traced_graph, validated_graph

HINGE_SQUARED = (
    "import torch\n"
    "def loss_fn(pc, pr, rc, rr, beta):\n"
    "    return torch.relu(1.0 - beta * ((pc - pr) - (rc - rr))) ** 2\n"
)


@pytest.fixture
def make_job(tmp_path):
    config = load_config(preset="tiny")
    train, heldout = write_synthetic_pairs(tmp_path / "data", 8)

    def make(**fields) -> CandidateJob:
        base = dict(
            candidate_id=1,
            name="c",
            work_dir=str(tmp_path / "work"),
            train_path=str(train),
            heldout_path=str(heldout),
            training=config.training,
            fitness=config.fitness,
        )
        return CandidateJob(**{**base, **fields})

    return make


def test_a_proposed_graph_is_trained_and_scored(make_job, tmp_path, sandbox_pool):
    result = run_job(make_job(graph=validated_graph(HINGE_SQUARED, sandbox_pool)))
    assert result.status == "done", result.reason
    assert 0.0 <= result.fitness <= 1.0 and result.n == 6
    assert result.metrics["steps"] == 6 and len(result.metrics["losses"]) == 6
    assert set(result.metrics["fitness_details"]["per_item"]) == {str(i) for i in range(6)}
    assert not (tmp_path / "work" / "model").exists()  # checkpoints are not kept by default


def test_registry_baseline(make_job):
    result = run_job(make_job(loss="ipo"))
    assert result.status == "done" and result.timings["train_s"] > 0


def test_pipeline_baseline_runs_the_whole_procedure(make_job):
    result = run_job(make_job(pipeline="spin"))
    assert result.status == "done", result.reason
    assert result.metrics["steps"] > 0


def test_a_loss_that_breaks_in_training_is_recorded_not_raised(make_job, sandbox_pool):
    overflowing = "import torch\ndef loss_fn(pc, pr, rc, rr, beta):\n    return torch.exp(pc * pr)\n"
    result = run_job(make_job(graph=traced_graph(overflowing, sandbox_pool)))
    assert result.status == "failed" and result.reason.startswith("training diverged: diverged at step 1")


def test_a_tampered_or_missing_graph_is_recorded_not_trained(make_job, sandbox_pool):
    graph = json.loads(validated_graph(HINGE_SQUARED, sandbox_pool))
    graph["variants"][0]["nodes"][0]["target"] = "builtins.exec"
    result = run_job(make_job(graph=json.dumps(graph)))
    assert result.status == "failed" and result.reason.startswith("GraphError: ")
    assert "train_s" not in result.timings  # refused before any training
    result = run_job(make_job())  # neither a graph nor a registry loss: never the default loss in its name
    assert result.status == "failed" and "no stored graph" in result.reason
