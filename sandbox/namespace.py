"""The module namespace candidate source executes in: only inside the sandbox's tracing child.

`load_namespace` executes the module code with torch, F, a tracing-aware `math`, a tracing-aware `len` and the
safe builtins in scope; imports are limited to torch, torch.nn.functional and math. `math.log(beta)` and
`len(x)` on traced values become graph nodes instead of failing.
"""

from __future__ import annotations

import builtins
import math
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F

from sandbox.allowlist import IMPORTABLE_MODULES, MODULE_ATTRS, SAFE_BUILTINS
from sandbox.ops import MATH_FUNCTIONS

CANDIDATE_FILENAME = "<candidate>"


def _proxy_in(values: Any) -> torch.fx.Proxy | None:
    for value in values:
        if isinstance(value, torch.fx.Proxy):
            return value
    return None


def _traced_math_function(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        proxy = _proxy_in([*args, *kwargs.values()])
        if proxy is None:
            return function(*args, **kwargs)
        return proxy.tracer.create_proxy("call_function", function, args, kwargs)

    call.__name__ = function.__name__
    return call


def _tracing_math() -> types.ModuleType:
    module = types.ModuleType("math")
    for name in MODULE_ATTRS["math"]:
        value = getattr(math, name)
        setattr(module, name, _traced_math_function(value) if name in MATH_FUNCTIONS else value)
    return module


TRACING_MATH = _tracing_math()


def _len(value: Any) -> Any:
    """len() that records `x.shape[0]` for a traced tensor."""
    if isinstance(value, torch.fx.Proxy):
        return value.shape[0]
    return len(value)


def _safe_import(
    name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    """`__import__` for candidate code: torch, torch.nn.functional and math (the tracing copy) only.

    torch's C++ code imports its own modules through the same hook (PyImport_Import, which passes an empty
    list as fromlist; Python's import statement passes None or a tuple): those get the torch module already
    loaded, nothing new.
    """
    if level != 0:
        raise ImportError("relative imports are not allowed")
    if isinstance(fromlist, list) and not fromlist and name.startswith("torch.") and name in sys.modules:
        return sys.modules[name]
    if name == "torch.nn" and tuple(fromlist or ()) == ("functional",):
        return torch.nn
    if name not in IMPORTABLE_MODULES:
        raise ImportError(f"import of '{name}' is not allowed")
    kind = IMPORTABLE_MODULES[name]
    for item in fromlist or ():
        if item not in MODULE_ATTRS[kind]:
            raise ImportError(f"'from {name} import {item}' is not allowed")
    if name == "math":
        return TRACING_MATH
    return builtins.__import__(name, None, None, fromlist, 0)


def restricted_globals() -> dict[str, Any]:
    """Fresh globals for candidate code: torch, F, math, safe builtins and the restricted importer."""
    safe: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    safe["len"] = _len
    safe["__import__"] = _safe_import
    return {"__builtins__": safe, "__name__": "candidate", "torch": torch, "F": F, "math": TRACING_MATH}


def load_namespace(source: str, *, restricted: bool = True) -> dict[str, Any]:
    """Execute `source` as a module and return its namespace (sandbox child only).

    Untrusted source must have passed `check_policy` first. `restricted=False` gives full builtins; only the
    sandbox's own tests use it, to prove the child's defences hold when the policy is bypassed.
    """
    namespace = restricted_globals()
    if not restricted:
        namespace["__builtins__"] = builtins
    exec(compile(source, CANDIDATE_FILENAME, "exec"), namespace)
    return namespace
