"""``python -m evo.retrain`` end to end on the tiny preset (CPU), candidate selection, the placement of a training
(``evo.workers``), and what comes back from Ray Train's workers (gloo on CPU) when a loss diverges or the evaluation
fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evo.archive import Archive
from evo.config import ResourcesConfig, load_config
from evo.retrain import main, select_candidate, with_graph
from evo.retrain_store import RetrainStore
from evo.synthetic import write_synthetic_pairs
from evo.workers import Placement, TrainTask, init_ray, train_on_workers
from tests.evo.graphs import traced_graph, validated_graph
from trainer.config import TrainingConfig, TrainRun
from trainer.losses import get_loss_spec
from trainer.trainer import CandidateDiverged

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

MIXED = """def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * logits) + 0.1 * torch.relu(1 - beta * logits)
"""
EXPLODING = """def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * logits) * 1e39
"""


@pytest.fixture
def run_dir(tmp_path, sandbox_pool) -> Path:
    """A finished search: the DPO baseline, a better discovered loss, a worse one, an invalid proposal and the
    SPIN procedure baseline; discovered losses with their graphs, as the search stores them."""
    run = tmp_path / "run"
    archive = Archive(run / "archive.sqlite")
    archive.add(
        0,
        "baseline",
        "done",
        name="dpo",
        loss="sigmoid",
        code=get_loss_spec("sigmoid").source,
        fitness=0.50,
        stderr=0.1,
        n=6,
    )
    graph = validated_graph(MIXED, sandbox_pool)
    archive.add(
        1, "llm", "done", name="mixed_logistic_hinge", code=MIXED, graph=graph, fitness=0.90, stderr=0.05, n=6
    )
    archive.add(1, "symbolic", "done", name="weaker", code=MIXED, graph=graph, fitness=0.40, stderr=0.1, n=6)
    archive.add(2, "llm", "invalid", name="broken", code="def loss_fn(:", reason="[policy] syntax error")
    archive.add(0, "baseline", "done", name="spin", pipeline="spin", fitness=0.2, stderr=0.1, n=6)
    archive.close()
    return run


def _recipe(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump({"preset": "tiny", **fields}))
    return path


def test_select_candidate_by_rank_and_by_id(run_dir):
    archive = Archive(run_dir / "archive.sqlite")
    assert [select_candidate(archive, rank=k).name for k in (1, 2, 3)] == [
        "mixed_logistic_hinge",
        "dpo",
        "weaker",
    ]
    assert select_candidate(archive, candidate_id=1).loss == "sigmoid"
    with pytest.raises(ValueError, match="4 done candidate"):
        select_candidate(archive, rank=5)
    with pytest.raises(ValueError, match="is invalid"):
        select_candidate(archive, candidate_id=4)
    with pytest.raises(ValueError, match="spin procedure baseline"):
        select_candidate(archive, rank=4)
    archive.close()


def test_placement():
    two = Placement.of(ResourcesConfig(num_cpus=4, workers_per_candidate=2), TrainingConfig())
    assert (two.workers, two.cpus_per_worker, two.gpus_per_worker, two.on_ray_train) == (2, 2.0, 0.0, True)
    assert two.task_resources() == {"num_cpus": 0, "num_gpus": 0}  # Ray Train's workers hold the CPUs
    assert two.task_resources(in_task=True) == {"num_cpus": 4.0, "num_gpus": 0.0}  # a procedure baseline
    one = Placement.of(ResourcesConfig(num_cpus=2, gpus_per_worker=1), TrainingConfig())
    assert not one.on_ray_train and one.task_resources() == {"num_cpus": 2.0, "num_gpus": 1}
    zero3 = Placement.of(
        ResourcesConfig(workers_per_candidate=8, gpus_per_worker=1), TrainingConfig(deepspeed="zero3")
    )
    assert (zero3.gpus, zero3.deepspeed, zero3.on_ray_train) == (8, "zero3", True)
    assert Placement(gpus_per_worker=1, deepspeed="zero2").on_ray_train  # DeepSpeed needs its launcher
    with pytest.raises(ValueError, match="needs GPUs: set resources.gpus_per_worker"):
        Placement.of(ResourcesConfig(), TrainingConfig(deepspeed="zero3"))
    with pytest.raises(ValueError, match="workers_per_candidate must be >= 1"):
        Placement(workers=0)


def test_retrain_end_to_end_on_cpu(run_dir, tmp_path):
    recipe = _recipe(
        tmp_path / "tiny-full.yaml",
        training={"max_steps": 3},
        fitness={
            "kind": "proxy",
            "verifiable": {"families": ["no_commas", "json_key"], "n_heldout_topics": 2, "max_new_tokens": 8},
        },
        retrain={"evaluators": ["verifiable"]},
    )
    assert main([str(run_dir), "--rank", "1", "--recipe", str(recipe)]) == 0
    assert main([str(run_dir), "--candidate", "1", "--recipe", str(recipe)]) == 0

    store = RetrainStore(run_dir / "archive.sqlite")
    best, baseline = store.all()
    store.close()
    assert (best.candidate_id, best.recipe, best.status, best.fitness_kind) == (
        2,
        "tiny-full",
        "done",
        "proxy",
    )
    assert best.train["loss"] == "mixed_logistic_hinge"  # the candidate's own code was trained
    assert baseline.train["loss"] == "sigmoid"  # a baseline trains its registry loss
    for record in (best, baseline):
        assert record.train["steps"] == 3
        assert 0.0 <= record.fitness <= 1.0 and record.n == 6  # the 6 held-out synthetic pairs
        assert record.evaluations["verifiable"]["n"] == 4  # 2 instruction families x 2 held-out topics
        assert record.launch == {
            "workers": 1,
            "cpus_per_worker": 1.0,
            "gpus_per_worker": 0.0,
            "deepspeed": None,
        }
        assert record.train["world_size"] == 1
        assert record.config["training"]["max_steps"] == 3
        assert set(record.timings) == {"data_s", "train_s", "eval_s", "total_s"}
        assert (Path(record.output_dir) / "model" / "model.safetensors").exists()
    assert Path(best.output_dir) == run_dir / "retrains" / "2-tiny-full"

    archive = Archive(run_dir / "archive.sqlite")
    assert archive.get(2).fitness == 0.90  # the search-scale fitness stays next to the retrained one
    archive.close()


def test_a_candidate_archived_without_a_graph_is_validated_again(run_dir, tmp_path):
    archive = Archive(run_dir / "archive.sqlite")
    old = archive.get(archive.add(1, "llm", "done", name="old", code=MIXED, fitness=0.3, stderr=0.1, n=6))
    canary = tmp_path / "canary"
    forged = archive.get(
        archive.add(
            1,
            "llm",
            "done",
            name="forged",
            fitness=0.3,
            stderr=0.1,
            n=6,
            code=f"def loss_fn(a, b, c, d, beta):\n    open({str(canary)!r}, 'w')\n    return b - a\n",
        )
    )
    stored, baseline = archive.get(2), archive.get(1)
    archive.close()
    assert old.graph is None and with_graph(old).graph == stored.graph  # the same trace as the search's
    with pytest.raises(ValueError, match=r"does not validate now: \[policy\]"):
        with_graph(forged)
    assert not canary.exists()
    assert with_graph(baseline) is baseline  # a baseline trains its registry loss


def test_failed_retraining_is_recorded(run_dir, tmp_path, sandbox_pool):
    archive = Archive(run_dir / "archive.sqlite")
    exploding = archive.add(
        1,
        "llm",
        "done",
        name="exploding",
        code=EXPLODING,
        graph=traced_graph(EXPLODING, sandbox_pool),
        fitness=0.1,
        stderr=0.0,
        n=6,
    )
    archive.close()
    recipe = _recipe(tmp_path / "tiny-full.yaml", training={"max_steps": 2})
    assert main([str(run_dir), "--candidate", str(exploding), "--recipe", str(recipe)]) == 1
    store = RetrainStore(run_dir / "archive.sqlite")
    (record,) = store.for_candidate(exploding)
    store.close()
    assert record.status == "failed" and record.reason.startswith("training diverged")
    assert record.fitness is None


def test_cli_refuses_what_cannot_be_retrained(run_dir, tmp_path, capsys):
    recipe = _recipe(tmp_path / "tiny-full.yaml")
    assert main([str(run_dir), "--candidate", "4", "--recipe", str(recipe)]) == 2
    assert "only candidates whose code passed the sandbox" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--rank", "1", "--recipe", str(recipe)]) == 2


TINY_TRAINING = TrainingConfig(
    model="tiny", max_steps=2, batch_size=2, max_length=96, learning_rate=1e-3, dtype="float32"
)


def _run(tmp_path: Path) -> TrainRun:
    train, _ = write_synthetic_pairs(tmp_path / "data", 8)
    return TrainRun(data=str(train), output_dir=str(tmp_path / "model"))


def _no_score(model_dir: str) -> float:
    raise ValueError(f"no score for {Path(model_dir).name}")


@pytest.fixture
def ray_local():
    import ray

    init_ray(load_config(preset="tiny"))
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_train_workers_hand_back_divergence_and_evaluation_errors(tmp_path, sandbox_pool, ray_local):
    """Two gloo workers: a diverging loss stops every rank at step 1 and comes back as ``CandidateDiverged``; an
    evaluation that fails on rank 0 comes back as its own exception, after a checkpoint was written."""
    two = Placement(workers=2, cpus_per_worker=1.0)
    exploding = TrainTask(TINY_TRAINING, _run(tmp_path), "exploding", traced_graph(EXPLODING, sandbox_pool))
    with pytest.raises(CandidateDiverged) as diverged:
        train_on_workers(exploding, two)
    assert diverged.value.step == 1
    failing = TrainTask(TINY_TRAINING, _run(tmp_path), "dpo", evaluate=_no_score)
    with pytest.raises(ValueError, match="no score for model"):
        train_on_workers(failing, two)
    assert (tmp_path / "model" / "model.safetensors").exists()
