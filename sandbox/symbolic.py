"""Translate loss source into a sympy expression by interpreting its AST (the code is never executed).

Supported: straight-line code (assignments, returns, helper calls, imports), arithmetic, comparisons used as
masks, `torch.where`, and the elementwise functions of torch, F and math. Anything else (loops, batch
reductions such as mean/std, indexing) raises `Untranslatable`: such losses get a fingerprint but no
canonical form.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy

from sandbox.allowlist import IMPORTABLE_MODULES

POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED = sympy.symbols(
    "policy_chosen policy_rejected reference_chosen reference_rejected", real=True
)
BETA = sympy.Symbol("beta", positive=True)
# The log-ratio margin (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected).
MARGIN = sympy.Symbol("margin", real=True)
INPUTS = (POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, BETA)
MAX_CALL_DEPTH = 16
MAX_EXPONENT = 64


class Untranslatable(Exception):
    """The source uses something the translator does not model."""


@dataclass(frozen=True)
class _Module:
    kind: str


@dataclass(frozen=True)
class _Function:
    name: str


@dataclass(frozen=True)
class _Method:
    name: str
    receiver: Any


def _mask(value: Any) -> sympy.Expr:
    """Booleans used as numbers (`(x < 0).float()`) become 0/1 piecewise expressions."""
    if isinstance(value, sympy.logic.boolalg.Boolean) and not isinstance(value, sympy.Expr):
        return sympy.Piecewise((1, value), (0, True))
    if isinstance(value, sympy.Expr):
        return value
    if type(value) in (int, float):
        return sympy.Integer(value) if isinstance(value, int) else sympy.Rational(repr(value))
    raise Untranslatable(f"not a number: {type(value).__name__}")


def _identity(x: Any, *_: Any, **__: Any) -> Any:
    return x


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


def _unary(fn: Callable[[sympy.Expr], sympy.Expr]) -> Callable[[Any], sympy.Expr]:
    return lambda x: fn(_mask(x))


def _binary(fn: Callable[[sympy.Expr, sympy.Expr], sympy.Expr]) -> Callable[[Any, Any], sympy.Expr]:
    return lambda x, y: fn(_mask(x), _mask(y))


def _sigmoid(x: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-x))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
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
    "sign": _unary(sympy.sign),
    "sigmoid": _unary(_sigmoid),
    "logsigmoid": _unary(lambda x: -sympy.log(1 + sympy.exp(-x))),
    "relu": _unary(lambda x: sympy.Max(0, x)),
    "softplus": _softplus,
    "clamp": _clamp,
    "clip": _clamp,
    "clamp_min": lambda x, m: _clamp(x, min=m),
    "clamp_max": lambda x, m: _clamp(x, max=m),
    "pow": _binary(lambda x, y: x**y),
    "mul": _binary(lambda x, y: x * y),
    "multiply": _binary(lambda x, y: x * y),
    "add": _binary(lambda x, y: x + y),
    "sub": _binary(lambda x, y: x - y),
    "subtract": _binary(lambda x, y: x - y),
    "div": _binary(lambda x, y: x / y),
    "divide": _binary(lambda x, y: x / y),
    "true_divide": _binary(lambda x, y: x / y),
    "maximum": _binary(sympy.Max),
    "minimum": _binary(sympy.Min),
    "max": _binary(sympy.Max),
    "min": _binary(sympy.Min),
    "logaddexp": _binary(lambda x, y: sympy.log(sympy.exp(x) + sympy.exp(y))),
    "where": lambda c, a, b: sympy.Piecewise((_mask(a), c), (_mask(b), True)),
    "zeros_like": lambda *_, **__: sympy.Integer(0),
    "ones_like": lambda *_, **__: sympy.Integer(1),
    "full_like": lambda _, v, **__: _mask(v),
    "tensor": _identity,
    "as_tensor": _identity,
    "float": _unary(_identity),
    "double": _identity,
    "to": _identity,
    "type_as": _identity,
    "clone": _identity,
    "contiguous": _identity,
}
_CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E, "inf": sympy.oo, "tau": 2 * sympy.pi}
_BUILTINS = {"abs", "float", "min", "max", "pow"}
_BINOPS: dict[type, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_COMPARE: dict[type, Callable[[sympy.Expr, sympy.Expr], Any]] = {
    ast.Lt: sympy.Lt,
    ast.LtE: sympy.Le,
    ast.Gt: sympy.Gt,
    ast.GtE: sympy.Ge,
}


def to_sympy(source: str, entry: str = "loss_fn") -> sympy.Expr:
    """The loss as a sympy expression over INPUTS (raises Untranslatable or SyntaxError)."""
    tree = ast.parse(source)
    interpreter = _Interpreter(tree)
    function = interpreter.functions.get(entry)
    if function is None:
        raise Untranslatable(f"no function named {entry}")
    return _mask(interpreter.call(function, list(INPUTS), {}, depth=0))


class _Interpreter:
    def __init__(self, tree: ast.Module) -> None:
        self.functions: dict[str, ast.FunctionDef] = {}
        self.globals: dict[str, Any] = {"torch": _Module("torch"), "F": _Module("F"), "math": _Module("math")}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = node
                self.globals[node.name] = node
            else:
                self.run_statement(node, self.globals, depth=0)

    def call(self, function: ast.FunctionDef, args: list[Any], kwargs: dict[str, Any], depth: int) -> Any:
        if depth > MAX_CALL_DEPTH:
            raise Untranslatable("calls nested too deeply")
        spec = function.args
        if spec.vararg or spec.kwarg or spec.kwonlyargs or spec.posonlyargs:
            raise Untranslatable("only plain positional parameters are modelled")
        names = [a.arg for a in spec.args]
        defaults = dict(zip(names[len(names) - len(spec.defaults) :], spec.defaults, strict=True))
        scope: dict[str, Any] = dict(zip(names, args, strict=False)) | kwargs
        for name in names:
            if name not in scope:
                if name not in defaults:
                    raise Untranslatable(f"missing argument {name}")
                scope[name] = self.evaluate(defaults[name], self.globals, depth)
        for stmt in function.body:
            if isinstance(stmt, ast.Return):
                if stmt.value is None:
                    raise Untranslatable("returns nothing")
                return self.evaluate(stmt.value, scope, depth)
            self.run_statement(stmt, scope, depth)
        raise Untranslatable("function does not end in a return")

    def run_statement(self, node: ast.stmt, scope: dict[str, Any], depth: int) -> None:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            scope[node.targets[0].id] = self.evaluate(node.value, scope, depth)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            scope[node.target.id] = self.evaluate(node.value, scope, depth)
        elif (
            isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and type(node.op) in _BINOPS
        ):
            current = _mask(self.lookup(node.target.id, scope))
            scope[node.target.id] = self.binop(
                node.op, current, _mask(self.evaluate(node.value, scope, depth))
            )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                module = _Module(IMPORTABLE_MODULES.get(alias.name, alias.name) if alias.asname else top)
                scope[alias.asname or top] = module
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                value = _Module("F") if full == "torch.nn.functional" else _Function(alias.name)
                scope[alias.asname or alias.name] = value
        elif isinstance(node, ast.FunctionDef):
            self.functions[node.name] = node
            scope[node.name] = node
        elif not isinstance(node, ast.Pass) and not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            raise Untranslatable(f"'{type(node).__name__}' is not modelled")

    def lookup(self, name: str, scope: dict[str, Any]) -> Any:
        if name in scope:
            return scope[name]
        if name in self.globals:
            return self.globals[name]
        if name in _BUILTINS:
            return _Function(name)
        raise Untranslatable(f"unknown name {name}")

    def binop(self, op: ast.operator, left: sympy.Expr, right: sympy.Expr) -> sympy.Expr:
        if isinstance(op, ast.Pow) and left.is_number and right.is_number and abs(right) > MAX_EXPONENT:
            raise Untranslatable("exponent too large")
        return _BINOPS[type(op)](left, right)

    def evaluate(self, node: ast.expr, scope: dict[str, Any], depth: int) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            return _mask(int(node.value) if isinstance(node.value, bool) else node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node.id, scope)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left = _mask(self.evaluate(node.left, scope, depth))
            return self.binop(node.op, left, _mask(self.evaluate(node.right, scope, depth)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = _mask(self.evaluate(node.operand, scope, depth))
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            left = _mask(self.evaluate(node.left, scope, depth))
            return _COMPARE[type(node.ops[0])](left, _mask(self.evaluate(node.comparators[0], scope, depth)))
        if isinstance(node, ast.IfExp):
            test = self.evaluate(node.test, scope, depth)
            body, orelse = (_mask(self.evaluate(n, scope, depth)) for n in (node.body, node.orelse))
            return sympy.Piecewise((body, test), (orelse, True))
        if isinstance(node, ast.Attribute):
            return self.attribute(self.evaluate(node.value, scope, depth), node.attr)
        if isinstance(node, ast.Call):
            return self.call_expr(node, scope, depth)
        raise Untranslatable(f"'{type(node).__name__}' is not modelled")

    def attribute(self, value: Any, attr: str) -> Any:
        if isinstance(value, _Module):
            if value.kind == "torch" and attr == "nn":
                return _Module("torch.nn")
            if value.kind == "torch.nn" and attr == "functional":
                return _Module("F")
            return _CONSTANTS[attr] if attr in _CONSTANTS else _Function(attr)
        return _Method(attr, value)

    def call_expr(self, node: ast.Call, scope: dict[str, Any], depth: int) -> Any:
        function = self.evaluate(node.func, scope, depth)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise Untranslatable("star arguments are not modelled")
        args = [self.evaluate(a, scope, depth) for a in node.args]
        kwargs = {k.arg: self.evaluate(k.value, scope, depth) for k in node.keywords if k.arg is not None}
        if isinstance(function, ast.FunctionDef):
            return self.call(function, args, kwargs, depth + 1)
        if isinstance(function, _Method):
            args = [function.receiver, *args]
        if not isinstance(function, (_Function, _Method)) or function.name not in _FUNCTIONS:
            raise Untranslatable(f"call of {getattr(function, 'name', function)!r} is not modelled")
        kwargs.pop("dtype", None)
        kwargs.pop("device", None)
        try:
            return _FUNCTIONS[function.name](*args, **kwargs)
        except TypeError as exc:
            raise Untranslatable(f"unexpected arguments to {function.name}") from exc
