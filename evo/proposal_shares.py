"""How good each proposer's proposals are, from the archive's statuses: the shares parsed, passing the sandbox
and novel, of every proposal whose fate is decided.

parsed: not ``unparseable``; passing: parsed and not ``invalid`` (the sandbox validated it); novel: passing and
not ``duplicate``. Baselines are not proposals, and a candidate still ``proposed`` has no fate yet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from evo.archive import Candidate
from evo.status import Status

NOT_PROPOSERS = ("baseline",)


@dataclass(frozen=True)
class ProposalShares:
    proposals: int
    parsed: int
    passing: int
    novel: int

    def share(self, count: int) -> float:
        return count / self.proposals if self.proposals else 0.0

    def line(self, proposer: str) -> str:
        parts = (
            f"{n} {what} ({self.share(n):.0%})"
            for n, what in ((self.parsed, "parsed"), (self.passing, "passing"), (self.novel, "novel"))
        )
        return f"{proposer}: {self.proposals} proposals, " + ", ".join(parts)


def proposal_shares(candidates: Iterable[Candidate]) -> dict[str, ProposalShares]:
    """Per proposer (sorted by name), the shares of its decided proposals."""
    counts: dict[str, list[int]] = {}
    for c in candidates:
        if c.proposer in NOT_PROPOSERS or c.status == Status.PROPOSED:
            continue
        parsed = c.status != Status.UNPARSEABLE
        passing = parsed and c.status != Status.INVALID
        novel = passing and c.status != Status.DUPLICATE
        tally = counts.setdefault(c.proposer, [0, 0, 0, 0])
        for i, counted in enumerate((True, parsed, passing, novel)):
            tally[i] += counted
    return {proposer: ProposalShares(*counts[proposer]) for proposer in sorted(counts)}


def shares_lines(shares: Mapping[str, ProposalShares]) -> list[str]:
    return [s.line(proposer) for proposer, s in shares.items()]
