"""`compile_loss(source)`: a loss callable for source code, built without running the source here.

Kept for the callers that still hold source instead of a stored graph (report plots, retrain, the
distributed worker): the source is policy-checked, traced in a sandbox child (through one process-wide
`SandboxPool`, started on first use) and the callable is rebuilt from the graph by the trusted interpreter.
New code should store `ValidationResult.graph` and call `sandbox.build_loss(graph)` instead.
"""

from __future__ import annotations

import atexit
import threading

from sandbox.executor import SandboxPool
from sandbox.interpreter import GraphLoss, build_loss
from sandbox.policy import PolicyError, check_policy

_LOCK = threading.Lock()
_pool: SandboxPool | None = None


class LossRejected(ValueError):
    """The source passed the policy but could not be traced into a graph (the message says why)."""


def shared_pool() -> SandboxPool:
    """The process-wide pool `compile_loss` uses (started on first use, closed at exit)."""
    global _pool
    with _LOCK:
        if _pool is None:
            _pool = SandboxPool().start()
            atexit.register(_pool.close)
        return _pool


def compile_loss(source: str, entry: str = "loss_fn", pool: SandboxPool | None = None) -> GraphLoss:
    """Policy-check and trace `source` in the sandbox and return the loss rebuilt from its graph.

    Raises `PolicyError` when the source breaks the policy and `LossRejected` when it cannot be traced.
    The gradient tests are not run: validate with `validate_source` for a verdict.
    """
    violations = check_policy(source, entry=entry)
    if violations:
        raise PolicyError(violations)
    result = (pool or shared_pool()).trace(source, entry)
    if result.graph is None:
        raise LossRejected(f"[{result.stage}] {result.error}")
    return build_loss(result.graph)
