"""Which archived losses the symbolic proposer breeds from, and how it picks them.

Every sequence-level loss in the archive that passed the sandbox and translates to sympy is a parent: the
baselines (DPO, hinge, IPO...), LLM proposals (through the sandbox's canonical form of their traced graph) and
the symbolic proposer's own expressions. Candidates that behave alike (same fingerprint or canonical form)
count once, as the fittest of them.

Picking is a tournament on fitness (fitter parents win; a loss still training, with no fitness yet, loses to any
scored one) among entrants drawn with weight ``1 / (1 + children)``, so a parent that has already been bred
from many times makes room for the others: selection pressure without collapsing onto one lineage."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import sympy as sp

from evo.archive import Archive, Candidate
from evo.proposers.loss_expr import Untranslatable, from_canonical, from_srepr
from evo.status import Status

# Statuses of candidates whose code passed the sandbox and was not found to be a duplicate.
BREEDING_STATUSES = (Status.DONE, Status.TRAINING)


@dataclass(frozen=True)
class Parent:
    id: int
    name: str
    proposer: str
    fitness: float | None
    expr: sp.Expr
    children: int = 0

    @property
    def rank_key(self) -> tuple[bool, float]:
        return self.fitness is not None, self.fitness if self.fitness is not None else 0.0


class ParentTranslator:
    """A candidate's expression (its own, or read from its canonical form), cached by candidate id."""

    def __init__(self) -> None:
        self._cache: dict[int, sp.Expr | None] = {}

    def __call__(self, candidate: Candidate) -> sp.Expr | None:
        if candidate.id not in self._cache:
            self._cache[candidate.id] = self._translate(candidate)
        return self._cache[candidate.id]

    @staticmethod
    def _translate(candidate: Candidate) -> sp.Expr | None:
        try:
            if candidate.expression:
                return from_srepr(candidate.expression)
            if candidate.canonical:
                return from_canonical(candidate.canonical)
        except (Untranslatable, sp.SympifyError, TypeError, ValueError):
            return None
        return None


def breeding_pool(archive: Archive, translate: ParentTranslator) -> list[Parent]:
    """Every archived loss the proposer can breed from, one per behaviour (the fittest)."""
    everyone = archive.all()
    children = Counter(pid for c in everyone for pid in c.parent_ids)
    best: dict[str, Parent] = {}
    for c in everyone:
        if c.status not in BREEDING_STATUSES or c.pipeline or (c.status == Status.DONE and c.fitness is None):
            continue
        expr = translate(c)
        if expr is None:
            continue
        parent = Parent(c.id, c.name, c.proposer, c.fitness, expr, children[c.id])
        behaviour = c.fingerprint or c.canonical or sp.srepr(expr)
        if behaviour not in best or parent.rank_key > best[behaviour].rank_key:
            best[behaviour] = parent
    return sorted(best.values(), key=lambda p: p.id)


def pick(pool: list[Parent], rng: random.Random, tournament: int, exclude: Parent | None = None) -> Parent:
    """Tournament on fitness among ``tournament`` entrants drawn with weight 1 / (1 + children)."""
    field = [p for p in pool if p is not exclude] or pool
    # Weighted sampling without replacement (Efraimidis-Spirakis keys): u ** (1 / weight), largest keys win.
    keyed = sorted(field, key=lambda p: rng.random() ** (1 + p.children), reverse=True)
    return max(keyed[: max(1, tournament)], key=lambda p: p.rank_key)
