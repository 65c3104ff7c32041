"""Live training curves: the worker appends each logged step to ``steps.jsonl`` and the driver hands the new ones
to its step observers (wandb) while the candidate still trains, in pieces, ending with the curve the job reports."""

import time

import ray

from evo.config import load_config
from evo.loop import Search
from evo.proposers.symbolic import SymbolicProposer
from evo.workers import init_ray


def test_the_driver_hears_training_steps_while_the_candidate_trains(tmp_path):
    steps = 24  # at ~0.3 s a step, several of the driver's 1 s polls fall inside the training
    config = load_config(preset="tiny", overrides={"generations": 0, "training": {"max_steps": steps}})
    init_ray(config)
    search = Search(config, tmp_path / "run", {"symbolic": SymbolicProposer(seed=0)})
    heard: list[tuple[float, str, list[dict]]] = []
    search.step_observers.append(
        lambda candidate, rows: heard.append(
            (time.monotonic(), search.archive.get(candidate.id).status, rows)
        )
    )
    try:
        search.run()
        (baseline,) = search.archive.all()
    finally:
        search.close()
        ray.shutdown()
    assert baseline.status == "done", baseline.reason
    rows = [row for _, _, batch in heard for row in batch]
    assert [row["step"] for row in rows] == list(range(1, steps + 1))
    assert [row["loss"] for row in rows] == baseline.metrics["losses"]  # the same curve the job reports
    assert all(status == "training" for _, status, _ in heard)  # every piece came before the result
    assert len(heard) >= 2 and len(heard[0][2]) < steps  # in pieces: the first while training was under way
