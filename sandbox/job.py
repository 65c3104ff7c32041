"""What a sandbox child does with a request: load the candidate, run the gradient tests, compute novelty keys.

`run_job` returns a JSON-serialisable dict and never raises. It runs inside a confined child process (see
`sandbox.isolation`); nothing here isolates anything by itself.
"""

from __future__ import annotations

import os
import resource
import signal
import traceback
from typing import Any

from sandbox.compile import CANDIDATE_FILENAME, load_namespace
from sandbox.gradient_tests import LossCallError, run_gradient_tests
from sandbox.novelty import canonical_form, fingerprint

CANONICAL_BUDGET_S = 2.0
MAX_ERROR_CHARS = 1500

WARMUP_SOURCE = """
import torch
import torch.nn.functional as F


def loss_fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    return -F.logsigmoid(beta * logits) + 0.1 * torch.relu(1 - beta * logits) ** 2
"""


class _CanonicalTimeout(BaseException):
    """A BaseException, so that sympy's own `except Exception` clauses cannot swallow it."""


def describe_exception(exc: BaseException, source: str) -> str:
    """`Type: message (line N: `code`)`, pointing at the deepest candidate line; reads no files."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == CANDIDATE_FILENAME:
            line = lineno
    lines = source.splitlines()
    if line is not None and 0 < line <= len(lines):
        text += f" (line {line}: `{lines[line - 1].strip()}`)"
    return text[:MAX_ERROR_CHARS]


def _failure(stage: str, error: str) -> dict[str, Any]:
    return {
        "valid": False,
        "stage": stage,
        "error": error[:MAX_ERROR_CHARS],
        "fingerprint": None,
        "canonical_form": None,
    }


def _timed_canonical_form(source: str, entry: str) -> str | None:
    def expire(signum: int, frame: object) -> None:
        raise _CanonicalTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, CANONICAL_BUDGET_S, 0.1)  # re-fires until cleared
    try:
        try:
            return canonical_form(source, entry)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _CanonicalTimeout:
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)


def validate_candidate(source: str, entry: str, restricted: bool) -> dict[str, Any]:
    """Load the candidate, run the gradient tests and, when it passes, compute its novelty keys."""
    try:
        namespace = load_namespace(source, restricted=restricted)
        loss_fn = namespace.get(entry)
        if not callable(loss_fn):
            return _failure("execution", f"'{entry}' is not defined as a function")
        report = run_gradient_tests(loss_fn)
    except LossCallError as exc:
        return _failure("execution", f"{describe_exception(exc.cause, source)} {exc}")
    except BaseException as exc:  # anything the candidate raises, SystemExit and MemoryError included
        return _failure("execution", describe_exception(exc, source))
    if not report.passed:
        return _failure("gradient_tests", report.message)
    try:
        key = fingerprint(loss_fn)
    except Exception:  # a loss that passed in float32 may still fail in float64; it is then unkeyed
        key = None
    return {
        "valid": True,
        "stage": None,
        "error": None,
        "fingerprint": key,
        "canonical_form": _timed_canonical_form(source, entry),
    }


def probe() -> dict[str, Any]:
    """Facts about the confinement of this process, for tests and `SandboxPool.isolation`."""
    return {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "uid": os.getuid(),
        "env": sorted(os.environ),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "net_namespace": os.readlink("/proc/self/ns/net"),
        "rlimits": {
            name: resource.getrlimit(getattr(resource, name))
            for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_CORE")
        },
    }


def run_job(request: dict[str, Any]) -> dict[str, Any]:
    """Dispatch one request: mode 'validate' (restricted globals), 'unchecked' (full builtins) or 'probe'."""
    if request["mode"] == "probe":
        return {
            "valid": True,
            "stage": None,
            "error": None,
            "fingerprint": None,
            "canonical_form": None,
            "details": probe(),
        }
    return validate_candidate(request["source"], request["entry"], restricted=request["mode"] == "validate")
