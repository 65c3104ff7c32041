"""``python -m evo.retrain`` end to end on the tiny preset (CPU), candidate selection, the launch plan, and the
distributed launcher (``accelerate launch`` of the training worker, DDP on one CPU process)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evo.archive import Archive
from evo.retrain import main, select_candidate, with_graph
from evo.retrain_store import RetrainStore
from evo.synthetic import write_synthetic_pairs
from tests.evo.graphs import traced_graph, validated_graph
from trainer.config import TrainingConfig, TrainRun
from trainer.deepspeed.launch import DistributedJob, launch_plan, train_distributed, worker
from trainer.losses import get_loss_spec
from trainer.trainer import CandidateDiverged

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


def test_launch_plan():
    cpu = launch_plan("zero3", gpus=0)
    assert (cpu.backend, cpu.deepspeed) == ("in_process", None) and "zero3" in cpu.note
    assert launch_plan("zero3", gpus=1).to_json() == {
        "backend": "accelerate",
        "num_processes": 1,
        "deepspeed": "zero3",
        "note": None,
    }
    assert (launch_plan(None, gpus=4).backend, launch_plan(None, gpus=4).num_processes) == ("accelerate", 4)
    assert launch_plan(None, gpus=1).backend == "in_process"


def test_retrain_end_to_end_on_cpu(run_dir, tmp_path):
    recipe = _recipe(
        tmp_path / "tiny-full.yaml",
        training={"max_steps": 3, "deepspeed": "zero3"},  # no GPU here: trained in-process, the plan says why
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
        assert record.launch["backend"] == "in_process" and "zero3" in record.launch["note"]
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


TINY_TRAINING = TrainingConfig(model="tiny", max_steps=2, batch_size=4, max_length=96, learning_rate=1e-3)


def _run(tmp_path: Path, **overrides) -> TrainRun:
    train, _ = write_synthetic_pairs(tmp_path / "data", 8)
    return TrainRun(**{"data": str(train), "output_dir": str(tmp_path / "model"), **overrides})


def test_worker_reports_divergence_for_the_parent(tmp_path, sandbox_pool):
    job_file = tmp_path / "launch" / "job.json"
    job_file.parent.mkdir()
    graph = traced_graph(EXPLODING, sandbox_pool)
    job_file.write_text(DistributedJob(TINY_TRAINING, _run(tmp_path), "exploding", graph).to_json())
    with pytest.raises(CandidateDiverged):
        worker(job_file)
    assert json.loads((job_file.parent / "diverged.json").read_text())["step"] == 1
    assert not (job_file.parent / "result.json").exists()


def test_train_distributed_launches_the_worker_through_accelerate(tmp_path, sandbox_pool):
    """DDP with one CPU process: the real ``accelerate launch`` path that DeepSpeed runs take on GPUs."""
    result = train_distributed(
        TINY_TRAINING,
        _run(tmp_path, ref_cache_dir=str(tmp_path / "refcache")),
        tmp_path / "launch",
        num_processes=1,
        deepspeed=None,
        graph=validated_graph(MIXED, sandbox_pool),
        name="mixed_logistic_hinge",
    )
    assert (result.steps, result.metrics["loss"]) == (2, "mixed_logistic_hinge")
    assert result.metrics["training"] == dataclasses.asdict(
        TINY_TRAINING
    )  # the job file carried it unchanged
    assert result.metrics["run"]["ref_cache_dir"] is None  # launched runs keep the reference model alongside
    assert (tmp_path / "model" / "model.safetensors").exists()
    config = yaml.safe_load((tmp_path / "launch" / "accelerate.yaml").read_text())
    assert (config["distributed_type"], config["num_processes"]) == ("MULTI_GPU", 1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_the_launcher_dies_with_the_process_that_started_it(tmp_path):
    """A Ray task killed on its timeout must not leave the accelerate launcher (and its ranks) holding the GPUs."""
    pid_file = tmp_path / "launcher.pid"
    script = f"""
import sys
from pathlib import Path
import trainer.deepspeed.launch as launch
from trainer.config import TrainingConfig, TrainRun

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes
stand_in = "import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
launch.launch_command = lambda config_file, job_file: [sys.executable, "-c", stand_in]
launch.train_distributed(TrainingConfig(model="tiny"), TrainRun(data="x", output_dir={str(tmp_path / "model")!r}),
                         Path({str(tmp_path / "launch")!r}), num_processes=1, deepspeed=None)
"""
    caller = subprocess.Popen([sys.executable, "-c", script])
    launcher = None
    try:
        deadline = time.monotonic() + 180
        while not pid_file.exists() or not pid_file.read_text():
            assert caller.poll() is None and time.monotonic() < deadline, (
                "the stand-in launcher never started"
            )
            time.sleep(0.2)
        launcher = int(pid_file.read_text())
        caller.kill()
        caller.wait()
        deadline = time.monotonic() + 20
        while _alive(launcher) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(launcher)
    finally:
        if caller.poll() is None:
            caller.kill()
        if launcher is not None and _alive(launcher):
            os.kill(launcher, signal.SIGKILL)
