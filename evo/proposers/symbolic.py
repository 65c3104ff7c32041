"""Proposals by sympy-level mutation and crossover of archived losses.

Losses are sympy expressions in ``z = beta * x`` (``x`` the DPO log-ratio margin; see
``evo.proposers.loss_expr``) built from the primitives that the discovered losses of the literature come from:
logistic ``softplus(-z)``, hinge ``relu(1 - z)``, exponential ``exp(-z)``, squared ``(z - 1)^2``, the sigmoid
``sigmoid(-z)``; combined by fixed mixtures ``a f + (1 - a) g`` and sigmoid gates
``s(z / tau) f + (1 - s(z / tau)) g`` (DiscoPOP's LRML is one of these).

Parents are every archived sequence-level loss that translates to sympy, whoever proposed it
(``evo.proposers.parents``: DPO and the other baselines, LLM proposals, the proposer's own), picked by a
fitness tournament that keeps diversity. Mutation perturbs a constant, swaps a primitive, rescales a primitive's
temperature or adds a gate; crossover gates or mixes two parents (an LLM loss with a symbolic one, say). The
child's expression is stored in the archive (``srepr``) and its code printed as numerically safe torch."""

from __future__ import annotations

import dataclasses
import math
import random

import sympy as sp

from evo.archive import Archive
from evo.proposers.base import Proposal, Unparseable
from evo.proposers.loss_expr import (
    FUNCTIONS,
    Relu,
    SafeExp,
    Sigmoid,
    Softplus,
    Untranslatable,
    describe,
    from_srepr,
    number,
    to_code,
    z,
)
from evo.proposers.parents import Parent, ParentTranslator, breeding_pool, pick

__all__ = ["PRIMITIVES", "FUNCTIONS", "SymbolicProposer", "from_srepr", "gated", "mixed", "to_code", "z"]

PRIMITIVES = {
    "logistic": lambda u: Softplus(-u),
    "hinge": lambda u: Relu(1 - u),
    "exponential": lambda u: SafeExp(-u),
    "squared": lambda u: (u - 1) ** 2,
    "sigmoid": lambda u: Sigmoid(-u),
}
# A child whose code cannot be printed (a parent's piece with no torch form) is bred again, at most this often.
MAX_BREEDING_TRIES = 8


def gated(f: sp.Expr, g: sp.Expr, tau: float) -> sp.Expr:
    gate = Sigmoid(z / number(tau))
    return gate * f + (1 - gate) * g


def mixed(f: sp.Expr, g: sp.Expr, weight: float) -> sp.Expr:
    return number(weight) * f + number(1 - weight) * g


class SymbolicProposer:
    name = "symbolic"

    def __init__(self, seed: int = 0, tournament: int = 3, crossover_rate: float = 0.4) -> None:
        self._random = random.Random(seed)
        self.tournament = tournament
        self.crossover_rate = crossover_rate
        self._translate = ParentTranslator()
        self._archive: Archive | None = None  # the archive of the last proposal, which a repair breeds from

    # ---- breeding -----------------------------------------------------------------------------------------------
    def _primitive(self) -> sp.Expr:
        family = self._random.choice(sorted(PRIMITIVES))
        temperature = number(math.exp(self._random.uniform(-0.7, 0.7)))
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
            new = number(float(old) * math.exp(self._random.gauss(0, 0.4)))
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

    def _breed(self, pool: list[Parent]) -> tuple[sp.Expr, str, tuple[int, ...]]:
        if not pool:
            first, second = self._primitive(), self._primitive()
            return mixed(first, second, self._random.uniform(0.3, 0.7)), "a mixture of two primitives", ()
        if len(pool) >= 2 and self._random.random() < self.crossover_rate:
            a = pick(pool, self._random, self.tournament)
            b = pick(pool, self._random, self.tournament, exclude=a)
            expr, how = self.crossover(a.expr, b.expr)
            return expr, f"{how} ({a.name} x {b.name})", (a.id, b.id)
        parent = pick(pool, self._random, self.tournament)
        expr, how = self.mutate(parent.expr)
        return expr, f"{how} (of {parent.name})", (parent.id,)

    def propose(self, archive: Archive, generation: int) -> Proposal | Unparseable:
        self._archive = archive
        child = self._breed_child(archive)
        return dataclasses.replace(child, name=f"sym_g{generation}_{self._random.randrange(16**4):04x}")

    def _breed_child(self, archive: Archive) -> Proposal:
        """A child of the archive's breeding pool, named later."""
        pool = breeding_pool(archive, self._translate)
        for _ in range(MAX_BREEDING_TRIES):
            expr, how, parents = self._breed(pool)
            try:
                code = to_code(expr)
            except Untranslatable:
                continue
            break
        else:
            expr, how, parents = self._breed([])
            code = to_code(expr)
        return Proposal(
            name="",
            code=code,
            thought=f"{how}: {describe(expr)}",
            parent_ids=parents,
            expression=sp.srepr(expr),
        )

    def repair(self, proposal: Proposal, error: str) -> Proposal | Unparseable:
        """A child the sandbox refused is not edited: another child is bred from the same archive (sympy cannot read
        the error, and a fresh draw costs milliseconds), so a refused draw does not cost the generation a slot."""
        if self._archive is None:
            return Unparseable(f"no archive to breed a replacement from: {error[:200]}", proposal.code)
        fresh = self._breed_child(self._archive)
        refused = f" (bred again: the sandbox refused {error[:160]!r})"
        return dataclasses.replace(fresh, name=proposal.name, thought=fresh.thought + refused)
