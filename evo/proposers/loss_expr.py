"""Sequence-level losses as sympy expressions: the vocabulary, the torch printer and the two ways in.

Losses are expressions in ``z = beta * logits`` (``logits`` the DPO log-ratio margin), ``beta`` and, rarely, the
raw log-prob inputs, over sympy arithmetic and the numerically safe functions below. They come in two ways:

- ``from_srepr``: the symbolic proposer's own expressions, as the archive stores them (``expression`` column);
- ``from_canonical``: any loss the sandbox translated to sympy (the archive's ``canonical`` column, over
  ``margin`` and ``beta``), whoever wrote it: a baseline, an LLM, a person. Its text is checked against a fixed
  list of names before sympy reads it, and rewritten into the vocabulary (``log(1 + exp(u))`` becomes
  ``Softplus(u)``, ``1 / (1 + exp(u))`` becomes ``Sigmoid(-u)``, ``Max(0, u)`` becomes ``Relu(u)``, ``exp`` and
  ``log`` get bounded arguments) so that the printed code stays finite on large margins.

``to_code`` prints an expression as a loss function (precedence-aware, few parentheses);
``evo.proposers.grammar.sentence`` prints the subset that the LLM's grammar can say."""

from __future__ import annotations

import math
import re

import sympy as sp

z = sp.Symbol("z", real=True)
BETA = sp.Symbol("beta", positive=True)
MARGIN = sp.Symbol("margin", real=True)
# Canonical-form symbols of the raw inputs (sandbox.graph_sympy) -> the argument names of the contract.
INPUTS = {
    "policy_chosen": "policy_chosen_logps",
    "policy_rejected": "policy_rejected_logps",
    "reference_chosen": "reference_chosen_logps",
    "reference_rejected": "reference_rejected_logps",
}
EXP_BOUND = 30.0
LOG_FLOOR = 1e-6
SQRT_FLOOR = 1e-12


class Softplus(sp.Function):
    """log(1 + exp(u)), printed as ``F.softplus``."""


class Relu(sp.Function):
    """max(0, u), printed as ``torch.relu``."""


class SafeExp(sp.Function):
    """exp(u), printed with its argument clamped so that large margins stay finite."""


class Sigmoid(sp.Function):
    """1 / (1 + exp(-u)), printed as ``torch.sigmoid``."""


class SafeLog(sp.Function):
    """log(u), printed with its argument clamped away from zero."""


FUNCTIONS = {"Softplus": Softplus, "Relu": Relu, "SafeExp": SafeExp, "Sigmoid": Sigmoid, "SafeLog": SafeLog}
HEADER = (
    "def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
    "    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)\n"
    "    z = beta * logits\n"
)
_CALLS = {
    Softplus: "F.softplus",
    Relu: "torch.relu",
    Sigmoid: "torch.sigmoid",
    sp.tanh: "torch.tanh",
    sp.Abs: "torch.abs",
}
_MORE_CALLS = {
    sp.sign: "torch.sign",
    sp.erf: "torch.erf",
    sp.sin: "torch.sin",
    sp.cos: "torch.cos",
    sp.atan: "torch.atan",
}
_SCALAR_CALLS = {
    SafeExp: "math.exp",
    SafeLog: "math.log",
    sp.tanh: "math.tanh",
    sp.erf: "math.erf",
    sp.atan: "math.atan",
    sp.sin: "math.sin",
    sp.cos: "math.cos",
}
_COMPARISONS = {sp.StrictLessThan: "<", sp.LessThan: "<=", sp.StrictGreaterThan: ">", sp.GreaterThan: ">="}
# Every name a canonical form may contain; anything else is not read (sympify evaluates its input).
_CANONICAL_NAMES = frozenset(
    {
        "margin",
        "beta",
        *INPUTS,
        "exp",
        "log",
        "Max",
        "Min",
        "Abs",
        "tanh",
        "sin",
        "cos",
        "atan",
        "erf",
        "sign",
        "sqrt",
        "Piecewise",
        "True",
        "False",
    }
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
MAX_CANONICAL_CHARS = 2000
ADD, MUL, UNARY, POW, ATOM = range(5)


class Untranslatable(ValueError):
    """The expression (or the canonical text) has no safe torch form here."""


def number(value: float) -> sp.Float:
    """A constant rounded to three significant digits (what mutation perturbs)."""
    return sp.Float(float(f"{value:.3g}"))


# ---- in ----------------------------------------------------------------------------------------------------------
def from_srepr(text: str) -> sp.Expr:
    """Inverse of ``sp.srepr`` for the proposer's own expressions (the archive's ``expression`` column)."""
    return sp.sympify(text, locals=dict(FUNCTIONS))


def from_canonical(text: str) -> sp.Expr:
    """A sandbox canonical form (over ``margin``, ``beta`` and raw inputs) as an expression in the vocabulary."""
    if len(text) > MAX_CANONICAL_CHARS:
        raise Untranslatable("canonical form too long")
    unknown = set(_IDENTIFIER.findall(text)) - _CANONICAL_NAMES
    if unknown or "__" in text:
        raise Untranslatable(f"unknown names {sorted(unknown)}")
    names = {"margin": MARGIN, "beta": BETA, **{k: sp.Symbol(k, real=True) for k in INPUTS}}
    try:
        expr = sp.sympify(text, locals=names)
    except (sp.SympifyError, SyntaxError, TypeError) as exc:
        raise Untranslatable(f"sympy cannot read it: {exc}") from None
    if not isinstance(expr, sp.Expr) or expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise Untranslatable("not a finite expression")
    expr = _floats(vocabulary(expr.subs(MARGIN, z / BETA)))
    if not expr.free_symbols & _tensor_symbols():
        raise Untranslatable("the loss does not depend on the inputs")
    return expr


def _floats(expr: sp.Expr) -> sp.Expr:
    """Non-integer rationals as floats: the constants that mutation perturbs."""
    return expr.xreplace({r: number(float(r)) for r in expr.atoms(sp.Rational) if not r.is_Integer})


def _exp_argument(term: sp.Expr) -> sp.Expr | None:
    return term.args[0] if isinstance(term, (sp.exp, SafeExp)) else None


def vocabulary(expr: sp.Expr) -> sp.Expr:
    """Rewrite standard functions into the numerically safe vocabulary, bottom-up."""
    if not expr.args:
        return expr
    args = [vocabulary(a) if isinstance(a, sp.Basic) else a for a in expr.args]
    if isinstance(expr, sp.log):
        inner = args[0]
        if isinstance(inner, sp.Add) and len(inner.args) == 2 and sp.S.One in inner.args:
            other = inner.args[0] if inner.args[1] == 1 else inner.args[1]
            if _exp_argument(other) is not None:
                return Softplus(_exp_argument(other))
        if _exp_argument(inner) is not None:
            return _exp_argument(inner)
        return SafeLog(inner)
    if isinstance(expr, sp.exp):
        return SafeExp(args[0])
    if isinstance(expr, sp.Pow) and args[1] == -1 and isinstance(args[0], sp.Add) and len(args[0].args) == 2:
        one, other = sorted(args[0].args, key=lambda a: a != 1)
        if one == 1 and _exp_argument(other) is not None:
            return Sigmoid(-_exp_argument(other))
    if isinstance(expr, sp.Max) and len(args) == 2 and sp.S.Zero in args:
        return Relu(args[0] if args[1] == 0 else args[1])
    return expr.func(*args)


# ---- out ---------------------------------------------------------------------------------------------------------
def _tensor_symbols() -> set[sp.Symbol]:
    return {z, *(sp.Symbol(k, real=True) for k in INPUTS)}


def is_tensor(expr: sp.Basic) -> bool:
    return bool(expr.free_symbols & _tensor_symbols())


MAX_EXACT_INT = 2**53  # the largest integer a loss graph stores exactly (sandbox.graph_decode's MAX_INT)


def _number_text(value: sp.Expr) -> str:
    if value.is_Integer and abs(int(value)) <= MAX_EXACT_INT:
        return str(int(value))
    as_float = float(value)
    if not math.isfinite(as_float):
        raise Untranslatable("an infinite constant")
    return f"{as_float:.6g}"


class _Printer:
    def wrap(self, expr: sp.Expr, at_least: int) -> str:
        text, precedence = self.print(expr)
        return text if precedence >= at_least else f"({text})"

    def print(self, expr: sp.Expr) -> tuple[str, int]:
        if isinstance(expr, sp.Symbol):
            return INPUTS.get(expr.name, expr.name), ATOM
        if expr.is_number:
            value = sp.Float(expr) if not expr.is_Number else expr
            if value.is_negative:
                return "-" + _number_text(-value), UNARY
            return _number_text(value), ATOM
        if isinstance(expr, sp.Add):
            return self.sum(expr), ADD
        if isinstance(expr, sp.Mul):
            return self.product(expr)
        if isinstance(expr, sp.Pow):
            return self.power(expr)
        if isinstance(expr, sp.Piecewise):
            return self.piecewise(expr), ATOM
        if isinstance(expr, (sp.Max, sp.Min)):
            return self.extremum(expr), ATOM
        if isinstance(expr, sp.Function):
            return self.call(expr), ATOM
        raise Untranslatable(f"cannot print {type(expr).__name__} as torch")

    def sum(self, expr: sp.Add) -> str:
        terms = sorted(expr.args, key=lambda t: (t.could_extract_minus_sign(), sp.default_sort_key(t)))
        text = self.wrap(terms[0], ADD)
        for term in terms[1:]:
            if term.could_extract_minus_sign():
                text += " - " + self.wrap(-term, MUL)
            else:
                text += " + " + self.wrap(term, MUL)
        return text

    def product(self, expr: sp.Mul) -> tuple[str, int]:
        coefficient, factors = expr.as_coeff_mul()
        if coefficient.is_negative:
            return "-" + self.product_body(((-coefficient,) if coefficient != -1 else ()) + factors), UNARY
        return self.product_body(((coefficient,) if coefficient != 1 else ()) + factors), MUL

    def product_body(self, factors: tuple[sp.Expr, ...]) -> str:
        numerator = [
            f for f in factors if not (isinstance(f, sp.Pow) and f.exp.is_negative and f.exp.is_Number)
        ]
        denominator = [1 / f for f in factors if f not in numerator]
        text = " * ".join(self.wrap(f, POW) for f in numerator) or "1"
        for factor in denominator:
            text += " / " + self.wrap(factor, ATOM)
        return text

    def power(self, expr: sp.Pow) -> tuple[str, int]:
        base, exponent = expr.args
        if exponent.is_Number and exponent.is_negative:
            return self.product_body((expr,)), MUL
        if exponent == sp.S.Half:
            return self.sqrt(base), ATOM
        if not exponent.is_Integer and is_tensor(base):
            return f"torch.clamp({self.print(base)[0]}, min={SQRT_FLOOR}) ** {self.wrap(exponent, ATOM)}", POW
        return f"{self.wrap(base, ATOM)} ** {self.wrap(exponent, ATOM)}", POW

    def sqrt(self, base: sp.Expr) -> str:
        inner = self.print(base)[0]
        return (
            f"torch.sqrt(torch.clamp({inner}, min={SQRT_FLOOR}))"
            if is_tensor(base)
            else f"math.sqrt({inner})"
        )

    def call(self, expr: sp.Function) -> str:
        args = expr.args
        if not is_tensor(expr):
            if type(expr) in _SCALAR_CALLS and len(args) == 1:
                return f"{_SCALAR_CALLS[type(expr)]}({self.print(args[0])[0]})"
            raise Untranslatable(f"{type(expr).__name__} of a scalar")
        if type(expr) in _CALLS:
            return f"{_CALLS[type(expr)]}({self.print(args[0])[0]})"
        if isinstance(expr, SafeExp):
            return f"torch.exp(torch.clamp({self.print(args[0])[0]}, max={EXP_BOUND}))"
        if isinstance(expr, SafeLog):
            return f"torch.log(torch.clamp({self.print(args[0])[0]}, min={LOG_FLOOR}))"
        if type(expr) in _MORE_CALLS:
            return f"{_MORE_CALLS[type(expr)]}({self.print(args[0])[0]})"
        raise Untranslatable(f"cannot print {type(expr).__name__} as torch")

    def extremum(self, expr: sp.Expr) -> str:
        if not is_tensor(expr):
            raise Untranslatable("a maximum or minimum of scalars")
        bound = "min" if isinstance(expr, sp.Max) else "max"
        tensors = [a for a in expr.args if is_tensor(a)]
        scalars = [a for a in expr.args if not is_tensor(a)]
        text = self.print(tensors[0])[0]
        for other in tensors[1:]:
            text = f"torch.{'maximum' if bound == 'min' else 'minimum'}({text}, {self.print(other)[0]})"
        if scalars:
            limit = scalars[0] if len(scalars) == 1 else expr.func(*scalars)
            text = f"torch.clamp({text}, {bound}={self.print(limit)[0]})"
        return text

    def piecewise(self, expr: sp.Piecewise) -> str:
        *cases, (last, condition) = expr.args
        if condition != sp.true:
            raise Untranslatable("a piecewise expression without a default")
        text = self.branch(last)
        for value, case in reversed(cases):
            text = f"torch.where({self.condition(case)}, {self.branch(value)}, {text})"
        return text

    def branch(self, value: sp.Expr) -> str:
        return self.print(value)[0] if is_tensor(value) else f"torch.zeros_like(z) + {self.wrap(value, MUL)}"

    def condition(self, case: sp.Basic) -> str:
        if type(case) not in _COMPARISONS or not is_tensor(case):
            raise Untranslatable("a condition that is not a comparison of tensors")
        left, right = case.args
        return f"{self.wrap(left, ADD)} {_COMPARISONS[type(case)]} {self.wrap(right, ADD)}"


def to_torch(expr: sp.Expr) -> str:
    """Python source (torch / F / math) for an expression over ``z``, ``beta`` and the inputs."""
    return _Printer().print(expr)[0]


def to_code(expr: sp.Expr) -> str:
    """The loss function for an expression; raises ``Untranslatable`` where it has no torch form."""
    if not is_tensor(expr):
        raise Untranslatable("the loss does not depend on the inputs")
    return HEADER + f"    return {to_torch(expr)}\n"


def describe(expr: sp.Expr) -> str:
    text = str(expr)
    for name, shown in (
        ("Softplus", "softplus"),
        ("Relu", "relu"),
        ("SafeExp", "exp"),
        ("SafeLog", "log"),
        ("Sigmoid", "sigmoid"),
    ):
        text = text.replace(name, shown)
    return text[:300]
