"""How an LLM's reply is constrained: a GBNF grammar (llama.cpp), a JSON schema, or nothing.

The grammar admits exactly the JSON envelope ``{"thought": ..., "name": ..., "code": ...}`` whose code is the
contract's header (``loss_expr.HEADER``: the DPO margin ``logits`` and ``z = beta * logits``), optionally one
helper line ``w = <loss>``, and ``return <loss>``. Its expressions are typed by monotonicity in the margin:

- increasing (I): ``z``, ``logits``; decreasing (D): a negated I, and ``w``;
- ``F.logsigmoid``, ``F.softplus``, ``torch.sigmoid``, ``torch.tanh``, ``torch.relu``, ``torch.clamp`` and
  ``exp``/``log`` (with a clamped argument) are increasing, so they keep the type of their argument;
- a term is a positive scalar (numbers, beta) times one typed factor, divided by a number or beta;
  a minus sign flips the type; scalar terms may be added anywhere.

The returned loss must be of type D: it never rises as the chosen completion gains on the rejected one, which
is the direction the sandbox's gradient tests demand, and every sentence is finite on finite inputs (bounded
``exp`` arguments, ``log`` arguments clamped above zero, no division by tensors). Nesting and lengths are
bounded, so a reply always ends well inside ``max_tokens``. What the grammar cannot say (products of two
tensors such as sigmoid gates, powers of tensors, masks) is the symbolic proposer's ground.

``sentence(expr)`` prints an expression of the symbolic vocabulary in this language (or refuses), which is how
the archive's losses become few-shot examples the constrained model can imitate token for token."""

from __future__ import annotations

import functools
import json
import re

import sympy as sp

from evo.proposers.loss_expr import BETA, HEADER, Relu, SafeExp, SafeLog, Sigmoid, Softplus, Untranslatable, z

INCREASING_NAMES = ("z", "logits")
HELPER = "w"
CALLS = ("F.logsigmoid", "F.softplus", "torch.sigmoid", "torch.tanh", "torch.relu")
MAX_DEPTH = 3  # parentheses nested in one expression
MAX_TERMS = 3
MAX_SCALAR_FACTORS = 2
MAX_DIVISORS = 1
THOUGHT_CHARS = "[A-Za-z0-9 ,.;:()+*/=<>_'-]"
EXP_MAX = "30.0"  # loss_expr's exp bound, the largest the grammar allows
LOG_MIN = "1e-06"

JSON_SCHEMA = {
    "type": "object",
    "properties": {"thought": {"type": "string"}, "name": {"type": "string"}, "code": {"type": "string"}},
    "required": ["thought", "name", "code"],
    "additionalProperties": False,
}
_OPPOSITE = {"I": "D", "D": "I"}
_CALL_OF = {Softplus: "F.softplus", Sigmoid: "torch.sigmoid", sp.tanh: "torch.tanh", Relu: "torch.relu"}


def _literal(text: str) -> str:
    """A GBNF string literal matching ``text`` as it appears inside a JSON string."""
    in_json = json.dumps(text)[1:-1]
    return '"' + in_json.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(items: tuple[str, ...]) -> str:
    return "(" + " | ".join(_literal(i) for i in items) + ")"


def _typed_rules(tag: str, helper: bool) -> list[str]:
    """Rules ``e{T}{tag}{d}`` (T in I, D) for d = 0..MAX_DEPTH nested parentheses."""
    rules = []
    for d in range(MAX_DEPTH + 1):
        for kind, other in _OPPOSITE.items():
            e, t, f, a = (f"{x}{kind}{tag}{d}" for x in "etfa")
            t_other, a_other = f"t{other}{tag}{d}", f"a{other}{tag}{d}"
            atoms = ["inames"] if kind == "I" else ([_literal(HELPER)] if helper else [])
            if d >= 1:
                inner = f"e{kind}{tag}{d - 1}"
                atoms += [f'"(" {inner} ")"', f'call "(" {inner} ")"', f'"torch.clamp(" {inner} bounds ")"']
            if d >= 2:
                inner = f"e{kind}{tag}{d - 2}"
                atoms += [
                    f'"torch.exp(torch.clamp(" {inner} ", max=" expmax "))"',
                    f'"torch.log(torch.clamp(" {inner} ", min=" pnum "))"',
                ]
            has_atoms = bool(atoms)
            other_has_atoms = other == "I" or helper or d >= 1
            factors = ([a] if has_atoms else []) + ([f'"-" {a_other}'] if other_has_atoms else [])
            rules += [
                f'{e} ::= ({t} | sterm (" + " {t} | " - " {t_other})) '
                f'(" + " {t} | " - " {t_other} | addop sterm){{0,{MAX_TERMS - 1}}}',
                f'{t} ::= (spos " * ")? {f} divisors | "-" spos " * " f{other}{tag}{d} divisors',
                f"{f} ::= " + " | ".join(factors),
            ]
            if has_atoms:
                rules.append(f"{a} ::= " + " | ".join(atoms))
    return rules


@functools.cache
def loss_grammar() -> str:
    """The GBNF grammar of a reply (llama.cpp's ``grammar`` request field)."""
    plain, helped = f"eDo{MAX_DEPTH}", f"eDw{MAX_DEPTH}"
    newline = _literal("\n")
    rules = [
        'root ::= "{\\"thought\\": \\"" thought "\\", \\"name\\": \\"" name "\\", \\"code\\": \\"" code "\\"}"',
        f"thought ::= {THOUGHT_CHARS}{{8,240}}",
        "name ::= [a-z] [a-z0-9_]{2,40}",
        f"code ::= {_literal(HEADER)} body",
        f'body ::= "    return " {plain} {newline} | "    {HELPER} = " {plain} {newline} "    return " {helped} {newline}',
        f"inames ::= {_alternatives(INCREASING_NAMES)}",
        f"call ::= {_alternatives(CALLS)}",
        'addop ::= " + " | " - "',
        'num ::= [0-9]{1,2} ("." [0-9]{1,6})? ("e-0" [1-9])?',
        'pnum ::= ([1-9] [0-9]? ("." [0-9]{1,6})? | "0." [0-9]{0,5} [1-9]) ("e-0" [1-9])?',
        'snum ::= "-"? num',
        'expmax ::= "-"? ([0-9] | [12] [0-9] | "30") ("." [0-9]{1,3})?',
        'spos ::= (pnum | "beta") (" * " (pnum | "beta")){0,' + str(MAX_SCALAR_FACTORS - 1) + "}",
        'sfactor ::= "-"? ("beta" | num)',
        f'sterm ::= sfactor (" * " sfactor | " / " divisor){{0,{MAX_SCALAR_FACTORS - 1}}}',
        'divisor ::= pnum | "beta"',
        f'divisors ::= (" / " divisor){{0,{MAX_DIVISORS}}}',
        'bounds ::= ", min=" snum | ", max=" snum | ", min=" snum ", max=" snum',
        *_typed_rules("o", helper=False),
        *_typed_rules("w", helper=True),
    ]
    return "\n".join(rules) + "\n"


# ---- printing the symbolic vocabulary in the grammar's language -------------------------------------------------
_NUMBER = re.compile(r"[0-9]{1,2}(\.[0-9]{1,6})?(e-0[1-9])?")


def _number(value: sp.Expr) -> str:
    """A non-negative number as the grammar writes it (at most two integer digits)."""
    text = str(int(value)) if value.is_Integer else f"{float(value):.6g}"
    if not _NUMBER.fullmatch(text):
        raise Untranslatable(f"the number {text} is outside the grammar's language")
    return text


def _scalar_parts(factors: list[sp.Expr]) -> tuple[list[str], list[str]]:
    """Multipliers and divisors of positive scalar factors (numbers and powers of beta)."""
    multipliers, divisors = [], []
    for factor in factors:
        base, exponent = factor.as_base_exp()
        if factor.is_Number and factor.is_positive:
            multipliers.append(_number(factor))
        elif base == BETA and exponent.is_Integer and exponent > 0:
            multipliers += ["beta"] * int(exponent)
        elif base == BETA and exponent == -1:
            divisors.append("beta")
        else:
            raise Untranslatable(f"the factor {factor} is outside the grammar's language")
    if len(multipliers) > MAX_SCALAR_FACTORS or len(divisors) > MAX_DIVISORS:
        raise Untranslatable("too many scalar factors for the grammar")
    return multipliers, divisors


class _Sentence:
    """Typed printing: each method returns (text, type) with type I, D or S (scalar)."""

    def expression(self, expr: sp.Expr) -> tuple[str, str]:
        if not expr.free_symbols & {z}:
            return self.scalar(expr), "S"
        if isinstance(expr, sp.Add):
            return self.sum(expr)
        return self.term(expr)

    def scalar(self, expr: sp.Expr) -> str:
        """A positive scalar term: numbers and powers of beta."""
        if expr.free_symbols - {BETA}:
            raise Untranslatable("a term of inputs other than the margin (the grammar's only tensor)")
        if isinstance(expr, sp.Add):
            raise Untranslatable("a scalar the grammar cannot say")
        coefficient, factors = expr.as_coeff_mul()
        multipliers, divisors = _scalar_parts(list(factors))
        parts = ([_number(coefficient)] if coefficient != 1 or not multipliers else []) + multipliers
        if len(parts) + len(divisors) > MAX_SCALAR_FACTORS:
            raise Untranslatable("too many scalar factors for the grammar")
        return " * ".join(parts) + "".join(f" / {d}" for d in divisors)

    def signed(self, term: sp.Expr) -> tuple[str, str, str]:
        """(sign, text of the positive term, type the signed term contributes: I, D or S)."""
        negative = term.could_extract_minus_sign()
        body = -term if negative else term
        if not body.free_symbols & {z}:
            return ("-" if negative else "+"), self.scalar(body), "S"
        text, kind = self.term(body)
        return ("-" if negative else "+"), text, (_OPPOSITE[kind] if negative else kind)

    def sum(self, expr: sp.Add) -> tuple[str, str]:
        terms = [self.signed(t) for t in sorted(expr.args, key=sp.default_sort_key)]
        kinds = {kind for _, _, kind in terms} - {"S"}
        if len(kinds) != 1 or len(terms) > MAX_TERMS:
            raise Untranslatable("a sum the grammar cannot type")
        tensors = [t for t in terms if t[2] != "S"]
        scalars = [t for t in terms if t[2] == "S"]
        positive = [t for t in tensors if t[0] == "+"]
        if positive:  # lead with a tensor term
            lead, rest = positive[0][1], [t for t in terms if t is not positive[0]]
        elif scalars:  # a scalar first, then the first (negative) tensor term
            sign, text, _ = scalars[0]
            lead = ("-" if sign == "-" else "") + text + f" - {tensors[0][1]}"
            rest = scalars[1:] + tensors[1:]
        else:
            lead, rest = "-" + tensors[0][1], tensors[1:]
        return lead + "".join(f" {sign} {text}" for sign, text, _ in rest), kinds.pop()

    def term(self, expr: sp.Expr) -> tuple[str, str]:
        coefficient, factors = expr.as_coeff_mul()
        tensors = [f for f in factors if f.free_symbols & {z}]
        if len(tensors) != 1:
            raise Untranslatable("a product of tensors")
        text, kind = self.factor(tensors[0])
        multipliers, divisors = _scalar_parts([f for f in factors if f is not tensors[0]])
        if coefficient.is_negative:
            kind = _OPPOSITE[kind]
            if coefficient == -1 and not multipliers:
                text = "-" + text
            else:
                text = "-" + " * ".join([_number(-coefficient), *multipliers]) + " * " + text
        elif coefficient != 1 or multipliers:
            text = (
                " * ".join(([_number(coefficient)] if coefficient != 1 else []) + multipliers) + " * " + text
            )
        return text + "".join(f" / {d}" for d in divisors), kind

    def factor(self, expr: sp.Expr) -> tuple[str, str]:
        """An atom: z, a parenthesised sum, or an increasing function of a typed expression."""
        if expr == z:
            return "z", "I"
        if isinstance(expr, sp.Add):
            text, kind = self.sum(expr)
            return f"({text})", kind
        if isinstance(expr, (sp.Max, sp.Min)):
            tensors = [a for a in expr.args if a.free_symbols & {z}]
            bounds = [a for a in expr.args if not a.free_symbols and a.is_Number]
            if len(tensors) != 1 or len(bounds) != len(expr.args) - 1 or len(bounds) != 1:
                raise Untranslatable("a clamp the grammar cannot say")
            inner, kind = self.typed(tensors[0])
            side = "min" if isinstance(expr, sp.Max) else "max"
            return f"torch.clamp({inner}, {side}={_number(bounds[0])})", kind
        if not isinstance(expr, sp.Function) or len(expr.args) != 1:
            raise Untranslatable(f"{type(expr).__name__} is outside the grammar's language")
        inner, kind = self.typed(expr.args[0])
        if isinstance(expr, SafeExp):
            return f"torch.exp(torch.clamp({inner}, max={EXP_MAX}))", kind
        if isinstance(expr, SafeLog):
            return f"torch.log(torch.clamp({inner}, min={LOG_MIN}))", kind
        if type(expr) in _CALL_OF:
            return f"{_CALL_OF[type(expr)]}({inner})", kind
        raise Untranslatable(f"{type(expr).__name__} is outside the grammar's language")

    def typed(self, expr: sp.Expr) -> tuple[str, str]:
        text, kind = self.expression(expr)
        if kind == "S":
            raise Untranslatable("a function of a scalar")
        return text, kind


def sentence(expr: sp.Expr) -> str:
    """The loss as code in the grammar's language; raises ``Untranslatable`` when the grammar cannot say it."""
    text, kind = _Sentence().expression(sp.sympify(expr))
    if kind != "D":
        raise Untranslatable("the loss does not fall as the margin grows")
    code = HEADER + f"    return {text}\n"
    if nesting(code) > MAX_DEPTH:
        raise Untranslatable("nested too deeply for the grammar")
    return code


def nesting(code: str) -> int:
    """The deepest parenthesis nesting of the lines after the header (what ``MAX_DEPTH`` bounds)."""
    deepest = depth = 0
    for char in code[len(HEADER) :] if code.startswith(HEADER) else code:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return deepest


def request_options(mode: str) -> dict:
    """Keyword arguments for ``chat.completions.create`` that constrain the reply in ``mode``."""
    if mode == "grammar":
        return {"extra_body": {"grammar": loss_grammar()}}
    if mode == "json_schema":
        schema = {"name": "loss_proposal", "schema": JSON_SCHEMA, "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "none":
        return {}
    raise ValueError(f"unknown constrain mode {mode!r}; known: grammar, json_schema, none")
