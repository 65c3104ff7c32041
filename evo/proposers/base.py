"""What every proposer returns: a ``Proposal`` (code to validate) or an ``Unparseable`` (no code found); and what
it raises when it can no longer propose (``ProposerUnavailable``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from evo.archive import Archive


@dataclass(frozen=True)
class Usage:
    """What proposing cost: tokens, dollars, and the faults (errors, timeouts, bad bodies) retried on the way."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    faults: tuple[str, ...] = ()

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.tokens_in + other.tokens_in,
            self.tokens_out + other.tokens_out,
            self.cost_usd + other.cost_usd,
            self.faults + other.faults,
        )


@dataclass(frozen=True)
class Proposal:
    name: str
    code: str
    thought: str = ""
    parent_ids: tuple[int, ...] = ()
    expression: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Unparseable:
    reason: str
    raw: str
    usage: Usage = field(default_factory=Usage)


class ProposerUnavailable(RuntimeError):
    """This proposer can no longer propose (its server cannot serve, its budget is spent); the message says why.

    The search disables the proposer, records the reason, and goes on with the others."""


class Proposer(Protocol):
    name: str

    def propose(self, archive: Archive, generation: int) -> Proposal | Unparseable: ...

    def repair(self, proposal: Proposal, error: str) -> Proposal | Unparseable: ...
