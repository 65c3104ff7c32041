"""Everything that touches untrusted loss code: policy, isolated tracing, graph tests, novelty, the interpreter.

The search validates source once, in sandbox children; everything else runs the traced graph, as data:

    from sandbox import SandboxPool, validate_source, build_loss, direction

    with SandboxPool() as pool:                            # ~5 s once; then well under 0.3 s per candidate
        result = validate_source(source, pool=pool)        # ValidationResult
    result.valid, result.stage, result.error               # verdict ("policy"|"execution"|"trace"|"gradient_tests")
    result.graph                                           # JSON dict (sandbox.graph format): store it
    result.fingerprint, result.canonical_form              # novelty keys, both from the graph
    result.isolation_missing                               # isolation the machine did not give: record it
    loss = build_loss(result.graph)                        # trainer/report/retrain: no source runs
    loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)  # -> (batch,)
    reading = direction(loss, policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)

A source whose entry function is `token_loss_fn` is validated against the token contract (`TOKEN`): per-token
log-probs and masks of shape (batch, seq); see `sandbox.contract`.

Nothing outside the sandbox turns source into a loss: callers store the graph and call `build_loss`. Names are
imported lazily, so that torch-free users of `sandbox.policy` do not load everything.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExecutionResult": "sandbox.executor",
    "SandboxPool": "sandbox.executor",
    "SEQUENCE": "sandbox.contract",
    "TOKEN": "sandbox.contract",
    "Contract": "sandbox.contract",
    "InputSpec": "sandbox.contract",
    "Direction": "sandbox.direction",
    "DirectionMonitor": "sandbox.direction",
    "direction": "sandbox.direction",
    "token_direction": "sandbox.direction",
    "GradientReport": "sandbox.gradient_tests",
    "run_gradient_tests": "sandbox.gradient_tests",
    "run_token_tests": "sandbox.token_tests",
    "GraphError": "sandbox.graph",
    "LossGraph": "sandbox.graph",
    "GraphLoss": "sandbox.interpreter",
    "GraphRuntimeError": "sandbox.interpreter",
    "build_loss": "sandbox.interpreter",
    "PROPERTIES": "sandbox.isolation",
    "Limits": "sandbox.isolation",
    "canonical_form": "sandbox.novelty",
    "fingerprint": "sandbox.novelty",
    "PolicyViolation": "sandbox.policy",
    "check_policy": "sandbox.policy",
    "ValidationResult": "sandbox.validate",
    "validate_source": "sandbox.validate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
