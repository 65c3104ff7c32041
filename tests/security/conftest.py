"""Shared fixtures for the attacks on the sandbox: one pool with short limits, a canary directory, a secret in
the parent's environment, and a guard asserting that the parent process is unchanged after every attack
(environment, torch functions, torch's global state, files, processes)."""

import os

import pytest
import torch
import torch.nn.functional as F

from sandbox.executor import SandboxPool, session_processes
from sandbox.isolation import Limits, process_table
from tests.security.attack_kit import SECRET, SECRET_NAME, at_rest

ATTACK_LIMITS = Limits(timeout_s=4.0, cpu_s=2, memory_mb=1024)
WATCHED_TORCH = ("exp", "log", "sigmoid", "relu", "where", "save", "load")
WATCHED_F = ("logsigmoid", "softplus", "relu")
WATCHED_TENSOR = ("exp", "sum", "mean", "backward", "__add__")


@pytest.fixture(scope="session")
def attack_pool():
    os.environ[SECRET_NAME] = SECRET
    pool = SandboxPool(limits=ATTACK_LIMITS).start()
    yield pool
    pool.close()
    os.environ.pop(SECRET_NAME, None)


@pytest.fixture(scope="session")
def canary_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("canary")


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def _children() -> set[int]:
    return {p.pid for p in process_table() if p.ppid == os.getpid() and p.state != "Z"}


def _snapshot() -> dict:
    return {
        **{f"torch.{n}": getattr(torch, n) for n in WATCHED_TORCH},
        **{f"F.{n}": getattr(F, n) for n in WATCHED_F},
        **{f"Tensor.{n}": getattr(torch.Tensor, n) for n in WATCHED_TENSOR},
        "grad_enabled": torch.is_grad_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


@pytest.fixture(autouse=True)
def parent_unchanged(attack_pool, canary_dir):
    """After each attack: same environment, same torch functions and global state, no file, no process left
    behind."""
    env, functions, children = _environment(), _snapshot(), _children()
    yield
    assert _environment() == env
    assert _snapshot() == functions
    assert list(canary_dir.iterdir()) == []
    for pid in attack_pool.zygote_pids:
        assert at_rest(pid), session_processes(pid)
    assert _children() <= children | set(attack_pool.zygote_pids)
