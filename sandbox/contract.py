"""Loss contracts as data: the named inputs a loss graph may read, with their roles.

A candidate's parameters are bound to roles: the contract's required inputs positionally (whatever the
candidate calls them), optional inputs by their role name (a parameter called `chosen_lengths`, say, when a
contract offers one). Further parameters must have constant defaults; they are frozen into the graph. A graph
records the roles it reads, so a contract can grow optional inputs without changing stored graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputKind = Literal["tensor", "scalar"]


@dataclass(frozen=True)
class InputSpec:
    """One input of a contract: its role name, a tensor of shape (batch, ...) or a Python scalar."""

    role: str
    kind: InputKind
    optional: bool = False


@dataclass(frozen=True)
class Contract:
    """The inputs of one loss signature; `batch_role` names the tensor whose first dimension is the batch."""

    name: str
    inputs: tuple[InputSpec, ...]
    batch_role: str

    @property
    def required(self) -> tuple[InputSpec, ...]:
        return tuple(spec for spec in self.inputs if not spec.optional)

    @property
    def optional(self) -> tuple[InputSpec, ...]:
        return tuple(spec for spec in self.inputs if spec.optional)

    def spec(self, role: str) -> InputSpec:
        for spec in self.inputs:
            if spec.role == role:
                return spec
        raise KeyError(f"the {self.name} contract has no input {role!r}")


SEQUENCE = Contract(
    name="sequence",
    inputs=(
        InputSpec("policy_chosen_logps", "tensor"),
        InputSpec("policy_rejected_logps", "tensor"),
        InputSpec("reference_chosen_logps", "tensor"),
        InputSpec("reference_rejected_logps", "tensor"),
        InputSpec("beta", "scalar"),
    ),
    batch_role="policy_chosen_logps",
)

CONTRACTS: dict[str, Contract] = {SEQUENCE.name: SEQUENCE}


def get_contract(name: str) -> Contract:
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"unknown loss contract {name!r}; known: {', '.join(sorted(CONTRACTS))}") from None
