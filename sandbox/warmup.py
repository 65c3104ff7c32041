"""Warm the zygote up before it isolates itself: import everything a child may need, run every kernel once.

Children run as an unprivileged uid that may not be able to read the Python installation (under /root, say),
so a module imported lazily inside a child would fail there. The zygote therefore calls every allow-listed
operation once (ignoring errors: only the imports and first-call setup matter), traces and checks a loss,
and builds a sympy expression with every modelled function, so that all of it is loaded before it forks.
"""

from __future__ import annotations

import contextlib
import warnings

import sympy
import torch

from sandbox.child import WARMUP_SOURCE, check_graph, trace_candidate
from sandbox.graph_sympy import BETA, FUNCTIONS, MARGIN
from sandbox.ops import FUNCTIONS as OPERATIONS
from sandbox.ops import TENSOR_METHODS

_ARGUMENT_SETS = ((), (1,), (0,), (0.5,), ("x",), ("x", "x"), ("x", 0.5), ("b", "x", "x"))


def _arguments(template: tuple, x: torch.Tensor) -> tuple:
    return tuple(x if a == "x" else (x > 0) if a == "b" else a for a in template)


def _exercise_operations() -> None:
    x = torch.linspace(-1.0, 1.0, 8, requires_grad=True)
    for function in OPERATIONS.values():
        for template in _ARGUMENT_SETS:
            with contextlib.suppress(Exception):
                result = function(*_arguments(template, x))
                if isinstance(result, torch.Tensor) and result.requires_grad:
                    result.sum().backward()
                break
    for method in TENSOR_METHODS:
        for template in _ARGUMENT_SETS:
            with contextlib.suppress(Exception):
                getattr(x, method)(*_arguments(template, x)[:1])
                break


def _exercise_sympy() -> None:
    terms = []
    for function in FUNCTIONS.values():
        for arguments in ((BETA * MARGIN,), (BETA * MARGIN, 2), (MARGIN < 0, MARGIN, 1)):
            with contextlib.suppress(Exception):
                terms.append(function(*arguments))
                break
    expression = sum(t for t in terms if isinstance(t, sympy.Expr))
    with contextlib.suppress(Exception):
        str(sympy.expand(expression, force=True))


def warm_up() -> None:
    """Load and run everything once (in the zygote, before it isolates itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _exercise_operations()
        traced = trace_candidate(WARMUP_SOURCE, "loss_fn", "sequence", restricted=True)
        check_graph(traced["graph"])
        _exercise_sympy()
