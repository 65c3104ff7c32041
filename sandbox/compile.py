"""Turn validated loss source into a callable with restricted globals.

`load_namespace` executes the module code with only torch, F, math and the safe builtins in scope (imports are
limited to those modules). `compile_loss` is what a trainer uses: it checks the policy, loads the code and
returns a function that runs the candidate under the audit guard (no file, network or process events).
"""

from __future__ import annotations

import builtins
import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from sandbox.allowlist import IMPORTABLE_MODULES, MODULE_ATTRS, SAFE_BUILTINS
from sandbox.audit import guarded
from sandbox.policy import PolicyError, check_policy

CANDIDATE_FILENAME = "<candidate>"


def _safe_import(
    name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    """`__import__` for candidate code: torch, torch.nn.functional and math only."""
    if level != 0:
        raise ImportError("relative imports are not allowed")
    if name in IMPORTABLE_MODULES:
        kind = IMPORTABLE_MODULES[name]
        for item in fromlist or ():
            if item not in MODULE_ATTRS[kind]:
                raise ImportError(f"'from {name} import {item}' is not allowed")
        return builtins.__import__(name, None, None, fromlist, 0)
    if name == "torch.nn" and tuple(fromlist or ()) == ("functional",):
        return torch.nn
    raise ImportError(f"import of '{name}' is not allowed")


def restricted_globals() -> dict[str, Any]:
    """Fresh globals for candidate code: torch, F, math, safe builtins and the restricted importer."""
    safe = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    safe["__import__"] = _safe_import
    return {"__builtins__": safe, "__name__": "candidate", "torch": torch, "F": F, "math": math}


def load_namespace(source: str, *, restricted: bool = True) -> dict[str, Any]:
    """Execute `source` as a module and return its namespace.

    Untrusted source must have passed `check_policy` first. `restricted=False` gives full builtins; only the
    sandbox's own tests use it, to prove the executor's defences hold when the policy is bypassed.
    """
    namespace = restricted_globals()
    if not restricted:
        namespace["__builtins__"] = builtins
    exec(compile(source, CANDIDATE_FILENAME, "exec"), namespace)
    return namespace


def compile_loss(source: str, entry: str = "loss_fn") -> Callable[..., torch.Tensor]:
    """Policy-check `source` and return its `entry` function, guarded for use inside a trainer.

    Raises `PolicyError` when the source breaks the policy and `ValueError` when `entry` is not a function.
    """
    violations = check_policy(source, entry=entry)
    if violations:
        raise PolicyError(violations)
    with guarded():
        namespace = load_namespace(source)
    function = namespace.get(entry)
    if not callable(function):
        raise ValueError(f"'{entry}' is not a function")

    @functools.wraps(function)
    def guarded_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
        with guarded():
            return function(*args, **kwargs)

    return guarded_loss
