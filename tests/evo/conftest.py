"""Helpers for running the search as a user would: ``python -m evo.launch`` in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def write_recipe(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


def launch(args: list[str], timeout: float = 900, env: dict | None = None,
           unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "evo.launch", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    return proc


@pytest.fixture
def recipe(tmp_path):
    return lambda **fields: write_recipe(tmp_path / "recipe.yaml", **fields)


@pytest.fixture(scope="session")
def sandbox_pool():
    """One warm sandbox pool for the tests that validate or trace losses (as the search's driver does)."""
    from sandbox.executor import SandboxPool

    with SandboxPool() as pool:
        yield pool
