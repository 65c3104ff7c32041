"""Everything that touches untrusted loss code: static policy, isolated execution, gradient tests, novelty.

The search loop calls `validate_source(source, pool=pool)` with one long-lived `SandboxPool`; a trainer turns
validated source into a guarded callable with `compile_loss(source)`. Names are imported lazily, so that
`python -m sandbox.validate` and torch-free users of `sandbox.policy` do not load everything.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExecutionResult": "sandbox.executor",
    "SandboxPool": "sandbox.executor",
    "compile_loss": "sandbox.compile",
    "GradientReport": "sandbox.gradient_tests",
    "run_gradient_tests": "sandbox.gradient_tests",
    "Limits": "sandbox.isolation",
    "canonical_form": "sandbox.novelty",
    "fingerprint": "sandbox.novelty",
    "PolicyError": "sandbox.policy",
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
