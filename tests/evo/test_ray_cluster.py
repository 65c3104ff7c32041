"""The tiny search on an existing Ray cluster: ``ray start --head`` started here (token authentication, a private
temp dir and free ports, so that other Ray instances on the machine are untouched), the search driver connected
through ``RAY_ADDRESS``, its candidate tasks run by the cluster's workers; the cluster is stopped by ending the
``ray start --block`` process this test started."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from evo.archive import Archive
from trainer.processes import free_port

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

START_TIMEOUT_S = 180


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def ray_cluster():
    """``RAY_ADDRESS`` and the environment of a 2-CPU single-node cluster, and its session log folder."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        logs = Path(temp_dir) / "session_latest" / "logs"
        while not (_listening(port) and (logs / "raylet.out").exists()):
            if head.poll() is not None:
                pytest.fail(f"ray start exited with {head.returncode}:\n{head.stdout.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up in {START_TIMEOUT_S}s")
            time.sleep(1)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, logs
    finally:
        head.send_signal(signal.SIGTERM)  # ray start --block stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_tiny_search_runs_on_an_existing_cluster(ray_cluster, tmp_path):
    env, logs = ray_cluster
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump({"proposers": {"llm": False}})
    )  # symbolic proposer only: no llama server
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evo.launch",
            "--preset",
            "tiny",
            "--generations",
            "1",
            "--population",
            "1",
            "--config",
            str(recipe),
            "--run-dir",
            str(run_dir),
        ],
        env={**env, "WANDB_MODE": "offline"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-3000:]
    assert "Connecting to existing Ray cluster" in err  # not a private local Ray
    # the cluster logged this very driver process
    assert list(logs.glob(f"python-core-driver-*_{driver.pid}.log")), sorted(p.name for p in logs.iterdir())

    archive = Archive(run_dir / "archive.sqlite")
    rows = archive.all()
    archive.close()
    assert [(c.generation, c.proposer, c.status) for c in rows] == [
        (0, "baseline", "done"),
        (1, "symbolic", "done"),
    ]
    for candidate in rows:
        assert candidate.fitness is not None and candidate.n == 6
        assert candidate.metrics["steps"] == 6  # the tiny preset's max_steps: trained, not skipped
    for candidate in rows:  # trained by a worker process of this cluster (its log is in the session folder)
        pid = int((run_dir / "candidates" / str(candidate.id) / "worker.pid").read_text())
        assert list(logs.glob(f"worker-*-{pid}.out")), (
            f"candidate {candidate.id}: pid {pid} is no cluster worker"
        )
    assert "Discovered losses" in out
