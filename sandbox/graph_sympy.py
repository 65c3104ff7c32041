"""Translate a traced loss graph into a sympy expression (for the canonical form and the report's formula).

The translation reads the graph, never the source: it shows what the traced operations compute, whatever the
candidate's Python looked like. Element-wise operations, arithmetic, comparisons used as masks, `where`,
clamps and the activations are modelled; anything else the output depends on (batch reductions such as
mean/std, indexing, sizes) raises `Untranslatable`: such losses get a fingerprint but no canonical form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy
import torch

from sandbox.graph import LossGraph, Ref, TensorConstant, Variant

POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED = sympy.symbols(
    "policy_chosen policy_rejected reference_chosen reference_rejected", real=True
)
BETA = sympy.Symbol("beta", positive=True)
# The log-ratio margin (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected).
MARGIN = sympy.Symbol("margin", real=True)
SYMBOLS: dict[str, sympy.Symbol] = {
    "policy_chosen_logps": POLICY_CHOSEN,
    "policy_rejected_logps": POLICY_REJECTED,
    "reference_chosen_logps": REFERENCE_CHOSEN,
    "reference_rejected_logps": REFERENCE_REJECTED,
    "beta": BETA,
    "chosen_lengths": sympy.Symbol("chosen_lengths", positive=True),
    "rejected_lengths": sympy.Symbol("rejected_lengths", positive=True),
}
MAX_EXPONENT = 64


class Untranslatable(Exception):
    """The graph uses something the translator does not model."""


def _mask(value: Any) -> sympy.Expr:
    """Booleans used as numbers (`(x < 0).float()`) become 0/1 piecewise expressions."""
    if isinstance(value, sympy.logic.boolalg.Boolean) and not isinstance(value, sympy.Expr):
        return sympy.Piecewise((1, value), (0, True))
    if isinstance(value, sympy.Expr):
        return value
    if isinstance(value, bool):
        return sympy.Integer(int(value))
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, float):
        return (
            sympy.Rational(repr(value)) if abs(value) != float("inf") else sympy.oo * (1 if value > 0 else -1)
        )
    raise Untranslatable(f"not a number: {type(value).__name__}")


def _clamp(x: Any, min: Any = None, max: Any = None) -> sympy.Expr:  # noqa: A002 - torch's keyword names
    x = _mask(x)
    if min is not None:
        x = sympy.Max(x, _mask(min))
    if max is not None:
        x = sympy.Min(x, _mask(max))
    return x


def _softplus(x: Any, beta: Any = 1, threshold: Any = None) -> sympy.Expr:
    beta = _mask(beta)
    return sympy.log(1 + sympy.exp(beta * _mask(x))) / beta


def _pow(x: Any, y: Any) -> sympy.Expr:
    x, y = _mask(x), _mask(y)
    if x.is_number and y.is_number and abs(y) > MAX_EXPONENT:
        raise Untranslatable("exponent too large")
    return x**y


def _unary(fn: Callable[[sympy.Expr], sympy.Expr]) -> Callable[..., sympy.Expr]:
    return lambda x, **_: fn(_mask(x))


def _binary(fn: Callable[[sympy.Expr, sympy.Expr], sympy.Expr]) -> Callable[[Any, Any], sympy.Expr]:
    return lambda x, y: fn(_mask(x), _mask(y))


def _sigmoid(x: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-x))


def _identity(x: Any, *_: Any, **__: Any) -> Any:
    return x


def _where(condition: Any, a: Any, b: Any) -> sympy.Expr:
    if isinstance(condition, sympy.Expr) and not condition.is_Piecewise:
        raise Untranslatable("where needs a comparison")
    if isinstance(condition, sympy.Piecewise):
        condition = condition.args[0].cond
    return sympy.Piecewise((_mask(a), condition), (_mask(b), True))


_COMPARISONS: dict[str, Callable[[sympy.Expr, sympy.Expr], Any]] = {
    "lt": sympy.Lt,
    "le": sympy.Le,
    "gt": sympy.Gt,
    "ge": sympy.Ge,
    "less": sympy.Lt,
    "greater": sympy.Gt,
}
# Element-wise operations by their name (after the torch./F./math./operator. prefix or as a method).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{name: _binary(fn) for name, fn in _COMPARISONS.items()},
    "exp": _unary(sympy.exp),
    "log": _unary(sympy.log),
    "sqrt": _unary(sympy.sqrt),
    "abs": _unary(sympy.Abs),
    "absolute": _unary(sympy.Abs),
    "fabs": _unary(sympy.Abs),
    "tanh": _unary(sympy.tanh),
    "sin": _unary(sympy.sin),
    "cos": _unary(sympy.cos),
    "atan": _unary(sympy.atan),
    "erf": _unary(sympy.erf),
    "log1p": _unary(lambda x: sympy.log(1 + x)),
    "expm1": _unary(lambda x: sympy.exp(x) - 1),
    "log2": _unary(lambda x: sympy.log(x) / sympy.log(2)),
    "log10": _unary(lambda x: sympy.log(x) / sympy.log(10)),
    "exp2": _unary(lambda x: 2**x),
    "square": _unary(lambda x: x**2),
    "rsqrt": _unary(lambda x: x ** sympy.Rational(-1, 2)),
    "reciprocal": _unary(lambda x: 1 / x),
    "neg": _unary(lambda x: -x),
    "negative": _unary(lambda x: -x),
    "pos": _unary(lambda x: x),
    "sign": _unary(sympy.sign),
    "sigmoid": _unary(_sigmoid),
    "logsigmoid": _unary(lambda x: -sympy.log(1 + sympy.exp(-x))),
    "relu": _unary(lambda x: sympy.Max(0, x)),
    "softplus": _softplus,
    "clamp": _clamp,
    "clip": _clamp,
    "clamp_min": lambda x, m: _clamp(x, min=m),
    "clamp_max": lambda x, m: _clamp(x, max=m),
    "pow": _pow,
    "add": _binary(lambda x, y: x + y),
    "sub": _binary(lambda x, y: x - y),
    "subtract": _binary(lambda x, y: x - y),
    "mul": _binary(lambda x, y: x * y),
    "multiply": _binary(lambda x, y: x * y),
    "div": _binary(lambda x, y: x / y),
    "divide": _binary(lambda x, y: x / y),
    "truediv": _binary(lambda x, y: x / y),
    "true_divide": _binary(lambda x, y: x / y),
    "maximum": _binary(sympy.Max),
    "minimum": _binary(sympy.Min),
    "logaddexp": _binary(lambda x, y: sympy.log(sympy.exp(x) + sympy.exp(y))),
    "where": _where,
    "zeros_like": lambda *_, **__: sympy.Integer(0),
    "ones_like": lambda *_, **__: sympy.Integer(1),
    "full_like": lambda _, v, **__: _mask(v),
    **dict.fromkeys(("float", "double", "to", "type_as", "clone", "contiguous", "detach"), _identity),
}
_DROPPED_KWARGS = ("dtype", "inplace")


def _name(op: str, target: str) -> str:
    return target if op == "call_method" else target.split(".", 1)[1]


class _Translator:
    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.memo: dict[int, Any] = {}

    def value(self, item: Any) -> Any:
        if isinstance(item, Ref):
            if item.node is None:
                return SYMBOLS[item.role] if item.role in SYMBOLS else _raise(f"input {item.role}")
            if item.node not in self.memo:
                self.memo[item.node] = self.node(item.node)
            return self.memo[item.node]
        if isinstance(item, TensorConstant):
            if isinstance(item.values, list):
                raise Untranslatable("tensor constants with several elements")
            return _mask(item.values)
        if item is None or isinstance(item, (bool, int, float, str, torch.dtype)):
            return item
        raise Untranslatable(f"argument of type {type(item).__name__}")

    def node(self, index: int) -> Any:
        node = self.variant.nodes[index]
        if node.op not in ("call_function", "call_method"):
            raise Untranslatable(f"{node.op} nodes")
        name = _name(node.op, node.target)
        if name not in FUNCTIONS:
            raise Untranslatable(f"{node.target} is not modelled")
        args = [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs if k not in _DROPPED_KWARGS}
        try:
            return FUNCTIONS[name](*args, **kwargs)
        except TypeError as exc:
            raise Untranslatable(f"unexpected arguments to {node.target}") from exc


def _raise(what: str) -> Any:
    raise Untranslatable(what)


def to_sympy(graph: LossGraph) -> sympy.Expr:
    """The loss of the graph's general variant (batch >= 2) as a sympy expression over the input symbols."""
    variant = next(v for v in graph.variants if v.batch in ("any", "many"))
    return _mask(_Translator(variant).value(variant.output))
