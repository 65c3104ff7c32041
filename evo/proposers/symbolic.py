"""Proposals by sympy-level mutation and crossover over loss primitives.

Losses are sympy expressions in ``z = beta * x`` (``x`` the DPO log-ratio margin) built from the primitives that
the discovered losses of the literature come from: logistic ``softplus(-z)``, hinge ``relu(1 - z)``, exponential
``exp(-z)``, squared ``(z - 1)^2``, the sigmoid ``sigmoid(-z)``; combined by fixed mixtures
``a f + (1 - a) g`` and sigmoid gates ``s(z / tau) f + (1 - s(z / tau)) g`` (DiscoPOP's LRML is one of these).

Mutation perturbs a constant, swaps a primitive, rescales a primitive's temperature or adds a gate; crossover
gates or mixes two parents from the archive (tournament on fitness). The expression is stored in the archive
(``srepr``) so later generations can breed from it; the code printer emits numerically safe torch."""

from __future__ import annotations

import math
import random

import sympy as sp

from evo.archive import Archive, Candidate
from evo.proposers.base import Proposal, Unparseable
from evo.status import Status

z = sp.Symbol("z", real=True)


class Softplus(sp.Function):
    """log(1 + exp(u)), printed as ``F.softplus``."""


class Relu(sp.Function):
    """max(0, u), printed as ``torch.relu``."""


class SafeExp(sp.Function):
    """exp(u), printed with its argument clamped so that large margins stay finite."""


class Sigmoid(sp.Function):
    """1 / (1 + exp(-u)), printed as ``torch.sigmoid``."""


PRIMITIVES = {
    "logistic": lambda u: Softplus(-u),
    "hinge": lambda u: Relu(1 - u),
    "exponential": lambda u: SafeExp(-u),
    "squared": lambda u: (u - 1) ** 2,
    "sigmoid": lambda u: Sigmoid(-u),
}
_FUNCTIONS = {"Softplus": Softplus, "Relu": Relu, "SafeExp": SafeExp, "Sigmoid": Sigmoid}
HEADER = (
    "def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
    "    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)\n"
    "    z = beta * logits\n"
)


def _num(value: float) -> sp.Float:
    return sp.Float(float(f"{value:.3g}"))


def gated(f: sp.Expr, g: sp.Expr, tau: float) -> sp.Expr:
    gate = Sigmoid(z / _num(tau))
    return gate * f + (1 - gate) * g


def mixed(f: sp.Expr, g: sp.Expr, weight: float) -> sp.Expr:
    return _num(weight) * f + _num(1 - weight) * g


def to_torch(expr: sp.Expr) -> str:
    """Python source (torch / F) for an expression over ``z``."""
    if isinstance(expr, sp.Symbol):
        return expr.name
    if expr.is_Number:
        return repr(float(expr))
    if isinstance(expr, sp.Add):
        return "(" + " + ".join(to_torch(a) for a in expr.args) + ")"
    if isinstance(expr, sp.Mul):
        return "(" + " * ".join(to_torch(a) for a in expr.args) + ")"
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        if exponent == -1:
            return f"(1.0 / {to_torch(base)})"
        return f"({to_torch(base)} ** {to_torch(exponent)})"
    if isinstance(expr, Softplus):
        return f"F.softplus({to_torch(expr.args[0])})"
    if isinstance(expr, Relu):
        return f"torch.relu({to_torch(expr.args[0])})"
    if isinstance(expr, SafeExp):
        return f"torch.exp(torch.clamp({to_torch(expr.args[0])}, max=30.0))"
    if isinstance(expr, Sigmoid):
        return f"torch.sigmoid({to_torch(expr.args[0])})"
    raise ValueError(f"cannot print {type(expr).__name__} as torch")


def to_code(expr: sp.Expr) -> str:
    return HEADER + f"    return {to_torch(expr)}\n"


def from_srepr(text: str) -> sp.Expr:
    """Inverse of ``sp.srepr`` for expressions built here (the archive's ``expression`` column)."""
    return sp.sympify(text, locals=dict(_FUNCTIONS))


def describe(expr: sp.Expr) -> str:
    return str(expr).replace("Softplus", "softplus").replace("Relu", "relu").replace("SafeExp", "exp")[:300]


class SymbolicProposer:
    name = "symbolic"

    def __init__(self, seed: int = 0, tournament: int = 3) -> None:
        self._random = random.Random(seed)
        self.tournament = tournament

    # ---- breeding -----------------------------------------------------------------------------------------------
    def _primitive(self) -> sp.Expr:
        family = self._random.choice(sorted(PRIMITIVES))
        temperature = _num(math.exp(self._random.uniform(-0.7, 0.7)))
        return PRIMITIVES[family](z * temperature)

    def _constants(self, expr: sp.Expr) -> list[sp.Float]:
        return sorted({a for a in sp.preorder_traversal(expr) if isinstance(a, sp.Float)}, key=str)

    def _primitive_nodes(self, expr: sp.Expr) -> list[sp.Expr]:
        nodes = [a for a in sp.preorder_traversal(expr) if isinstance(a, (Softplus, Relu, SafeExp))]
        return sorted(set(nodes), key=str)

    def mutate(self, expr: sp.Expr) -> tuple[sp.Expr, str]:
        choice = self._random.random()
        constants = self._constants(expr)
        if choice < 0.35 and constants:
            old = self._random.choice(constants)
            new = _num(float(old) * math.exp(self._random.gauss(0, 0.4)))
            return expr.xreplace({old: new}), f"perturbed the constant {old} to {new}"
        nodes = self._primitive_nodes(expr)
        if choice < 0.7 and nodes:
            old = self._random.choice(nodes)
            return expr.xreplace({old: self._primitive()}), f"swapped the primitive {describe(old)}"
        tau = math.exp(self._random.uniform(math.log(0.05), math.log(2.0)))
        return gated(expr, self._primitive(), tau), f"gated it with a new primitive (tau={tau:.3g})"

    def crossover(self, a: sp.Expr, b: sp.Expr) -> tuple[sp.Expr, str]:
        if self._random.random() < 0.5:
            tau = math.exp(self._random.uniform(math.log(0.05), math.log(2.0)))
            return gated(a, b, tau), f"a sigmoid gate (tau={tau:.3g}) between both parents"
        weight = self._random.uniform(0.2, 0.8)
        return mixed(a, b, weight), f"a {weight:.2f}/{1 - weight:.2f} mixture of both parents"

    def _parents(self, archive: Archive) -> list[Candidate]:
        return [c for c in archive.by_status(Status.DONE) if c.expression and c.fitness is not None]

    def _pick(self, pool: list[Candidate]) -> Candidate:
        entrants = self._random.sample(pool, min(self.tournament, len(pool)))
        return max(entrants, key=lambda c: c.fitness)

    def propose(self, archive: Archive, generation: int) -> Proposal | Unparseable:
        pool = self._parents(archive)
        if not pool:
            first, second = self._primitive(), self._primitive()
            expr, how = mixed(first, second, self._random.uniform(0.3, 0.7)), "a mixture of two primitives"
            parents: tuple[int, ...] = ()
        elif len(pool) >= 2 and self._random.random() < 0.4:
            a, b = self._pick(pool), self._pick(pool)
            expr, how = self.crossover(from_srepr(a.expression), from_srepr(b.expression))
            parents = (a.id, b.id)
        else:
            parent = self._pick(pool)
            expr, how = self.mutate(from_srepr(parent.expression))
            parents = (parent.id,)
        name = f"sym_g{generation}_{self._random.randrange(16**4):04x}"
        return Proposal(
            name=name, code=to_code(expr), thought=f"{how}: {describe(expr)}", parent_ids=parents,
            expression=sp.srepr(expr),
        )

    def repair(self, proposal: Proposal, error: str) -> Proposal | Unparseable:
        return Unparseable(f"symbolic proposals are not repaired: {error[:200]}", proposal.code)
