"""A candidate trained on two Ray Train workers (gloo, CPU) is the same training as one worker with the same global
batch: a one-generation tiny search with ``resources.workers_per_candidate: 2`` and 2 pairs per worker, against
``run_training`` in one process with 4 pairs per step, step by step."""

from __future__ import annotations

import math

import pytest

from evo.archive import Archive
from evo.config import load_config
from evo.data_prep import prepare_data
from tests.builders import launch
from trainer.config import TrainingConfig, TrainRun
from trainer.losses.discovered import candidate_loss
from trainer.train import run_training

PER_WORKER_BATCH = 2
WORKERS = 2
TRAINING = {"batch_size": PER_WORKER_BATCH, "max_steps": 4, "dtype": "float32"}  # float32: exact parity


@pytest.mark.slow
def test_two_workers_train_like_one_with_the_same_global_batch(tmp_path, recipe):
    run_dir = tmp_path / "run"
    path = recipe(
        preset="tiny",
        generations=1,
        population=1,
        proposers={"llm": False, "symbolic": True},
        training=TRAINING,
        resources={"num_cpus": 2, "workers_per_candidate": WORKERS, "max_in_flight": 1},
    )
    proc = launch(["--config", str(path), "--run-dir", str(run_dir)], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    archive = Archive(run_dir / "archive.sqlite")
    rows = [r for r in archive.all() if r.status in ("done", "failed")]
    archive.close()
    trained = [r for r in rows if r.status == "done"]
    assert trained and trained[0].name == "dpo", [(r.name, r.status, r.reason) for r in rows]
    train_path = prepare_data(load_config(run_dir / "config.yaml"), run_dir).train_path  # the search's pairs
    one_worker = TrainingConfig(
        model="tiny",
        learning_rate=1e-3,
        max_length=96,
        batch_size=PER_WORKER_BATCH * WORKERS,
        max_steps=TRAINING["max_steps"],
        dtype="float32",
    )
    for row in trained:
        assert row.metrics["world_size"] == WORKERS
        assert row.metrics["steps"] == TRAINING["max_steps"]
        training = one_worker.with_loss(row.loss) if row.loss else one_worker
        alone = run_training(
            training,
            TrainRun(data=str(train_path), output_dir=str(tmp_path / f"alone-{row.id}"), save_model=False),
            loss=None if row.loss else candidate_loss(row.name, row.graph, training.direction_patience),
        )
        assert alone.metrics["world_size"] == 1
        gaps = [abs(a - b) for a, b in zip(row.metrics["losses"], alone.losses, strict=True)]
        print(
            f"{row.name}: 2 workers {row.metrics['losses']} vs 1 worker {alone.losses}; max gap {max(gaps):.2e}"
        )
        assert all(math.isfinite(g) and g < 1e-4 for g in gaps)
