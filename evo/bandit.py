"""Shares the proposal budget between proposers by their yield (Thompson sampling on a Beta posterior).

A proposal's reward in [0, 1]: 0 when it was unparseable, invalid, a duplicate or failed; 0.5 when it was trained
(or is training); 1 when it also beat the best fitness known when it was proposed. Each proposer is tried once before sampling starts. The
posterior is rebuilt from the archive, so a
resumed run keeps what the bandit had learnt."""

from __future__ import annotations

import random
from collections.abc import Sequence

from evo.archive import Archive
from evo.status import Status


def reward(status: Status, fitness: float | None, best_before: float | None) -> float:
    if status not in (
        Status.TRAINING,
        Status.DONE,
    ):  # a failed candidate earns nothing (TRAINED holds FAILED)
        return 0.0
    if status == Status.DONE and fitness is not None and (best_before is None or fitness > best_before):
        return 1.0
    return 0.5


class ProposerBandit:
    def __init__(self, arms: Sequence[str], seed: int = 0) -> None:
        if not arms:
            raise ValueError("the bandit needs at least one proposer")
        self.arms = list(arms)
        self.successes = {a: 1.0 for a in self.arms}
        self.failures = {a: 1.0 for a in self.arms}
        self.pulls = {a: 0 for a in self.arms}
        self.disabled: set[str] = set()
        self._random = random.Random(seed)

    def update(self, arm: str, value: float) -> None:
        self.pulls[arm] += 1
        self.successes[arm] += value
        self.failures[arm] += 1.0 - value

    def disable(self, arm: str) -> None:
        self.disabled.add(arm)

    def choose(self) -> str | None:
        """The arm to ask next; None when every arm is disabled."""
        live = [a for a in self.arms if a not in self.disabled]
        if not live:
            return None
        untried = [a for a in live if self.pulls[a] == 0]
        if untried:  # every proposer gets a first chance before the posterior decides
            return untried[0]
        return max(live, key=lambda a: self._random.betavariate(self.successes[a], self.failures[a]))

    def share(self) -> dict[str, float]:
        """Posterior mean yield of each arm (for the progress display)."""
        return {a: self.successes[a] / (self.successes[a] + self.failures[a]) for a in self.arms}

    @classmethod
    def from_archive(cls, arms: Sequence[str], archive: Archive, seed: int = 0) -> ProposerBandit:
        bandit = cls(arms, seed)
        best: float | None = None
        for candidate in archive.all():
            if candidate.proposer in bandit.successes and candidate.repair_round == 0:
                bandit.update(candidate.proposer, reward(candidate.status, candidate.fitness, best))
            if candidate.status == Status.DONE and candidate.fitness is not None:
                best = candidate.fitness if best is None else max(best, candidate.fitness)
        return bandit
