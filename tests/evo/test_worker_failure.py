"""A Ray worker killed during training is retried once; killed again, the candidate is recorded as failed."""

import os
import signal
import time
from pathlib import Path

import pytest
import ray

from evo.config import load_config
from evo.data_prep import prepare_data
from evo.loop import Search
from evo.proposers.symbolic import SymbolicProposer
from evo.session import init_ray


def _wait_for_pid(path: Path, not_in: set[int], timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text().strip()
            if text and int(text) not in not_in:
                return int(text)
        time.sleep(0.2)
    raise AssertionError(f"no new worker wrote {path}")


@pytest.fixture
def ray_local():
    config = load_config(preset="tiny")
    init_ray(config)
    yield
    ray.shutdown()


def test_killed_worker_is_retried_then_recorded_failed(tmp_path, ray_local):
    config = load_config(preset="tiny", overrides={"training": {"max_steps": 400}, "proposers": {"llm": False}})
    search = Search(config, tmp_path, {"symbolic": SymbolicProposer()})
    try:
        search.data = prepare_data(config, tmp_path)
        cid = search.archive.add(0, "baseline", "training", name="dpo", loss="sigmoid")
        search._submit(search.archive.get(cid))
        pid_file = tmp_path / "candidates" / str(cid) / "worker.pid"
        first = _wait_for_pid(pid_file, set())
        os.kill(first, signal.SIGKILL)
        second = _wait_for_pid(pid_file, {first})  # Ray retried the task in a fresh worker
        os.kill(second, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while search.in_flight and time.monotonic() < deadline:
            search._collect(block=True)
        candidate = search.archive.get(cid)
    finally:
        search.close()
    assert first != second
    assert candidate.status == "failed"
    assert candidate.reason.startswith("worker lost:")
