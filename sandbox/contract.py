"""Loss contracts as data: the named inputs a loss graph may read, with their roles.

A candidate's parameters are bound to roles: the contract's required inputs positionally (whatever the
candidate calls them), optional inputs by their role name (a parameter called `chosen_lengths`, say, when a
contract offers one). Further parameters must have constant defaults; they are frozen into the graph. A graph
records the roles it binds, so a contract can grow optional inputs without changing stored graphs.

Two contracts, chosen by the candidate's entry function (`ENTRIES`):

- `sequence` (`loss_fn`): the four summed log-prob tensors (batch,) and beta; optional `chosen_lengths` and
  `rejected_lengths`, the completion token counts as float tensors (batch,). A graph that never reads the two
  reference inputs is reference-free (`reference_free`): training runs no reference model for it.
- `token` (`token_loss_fn`): the per-token log-probs of policy and reference (batch, seq), the completion
  masks (batch, seq; 1 on completion tokens, padding holds 0 in the log-probs) and beta; optional
  `chosen_kl` and `rejected_kl`, the per-token KL(reference || policy) (batch, seq) that TDPO uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputKind = Literal["tensor", "scalar"]


@dataclass(frozen=True)
class InputSpec:
    """One input of a contract: its role name, a tensor of shape (batch,) or, `per_token`, (batch, seq), or a
    Python scalar."""

    role: str
    kind: InputKind
    optional: bool = False
    per_token: bool = False


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

    @property
    def per_token(self) -> bool:
        return any(spec.per_token for spec in self.inputs)


LENGTH_ROLES = ("chosen_lengths", "rejected_lengths")
REFERENCE_ROLES = ("reference_chosen_logps", "reference_rejected_logps")
KL_ROLES = ("chosen_kl", "rejected_kl")

SEQUENCE = Contract(
    name="sequence",
    inputs=(
        InputSpec("policy_chosen_logps", "tensor"),
        InputSpec("policy_rejected_logps", "tensor"),
        InputSpec("reference_chosen_logps", "tensor"),
        InputSpec("reference_rejected_logps", "tensor"),
        InputSpec("beta", "scalar"),
        *(InputSpec(role, "tensor", optional=True) for role in LENGTH_ROLES),
    ),
    batch_role="policy_chosen_logps",
)

TOKEN = Contract(
    name="token",
    inputs=(
        InputSpec("policy_chosen_token_logps", "tensor", per_token=True),
        InputSpec("policy_rejected_token_logps", "tensor", per_token=True),
        InputSpec("reference_chosen_token_logps", "tensor", per_token=True),
        InputSpec("reference_rejected_token_logps", "tensor", per_token=True),
        InputSpec("chosen_mask", "tensor", per_token=True),
        InputSpec("rejected_mask", "tensor", per_token=True),
        InputSpec("beta", "scalar"),
        *(InputSpec(role, "tensor", optional=True, per_token=True) for role in KL_ROLES),
    ),
    batch_role="policy_chosen_token_logps",
)

CONTRACTS: dict[str, Contract] = {SEQUENCE.name: SEQUENCE, TOKEN.name: TOKEN}
# The entry function a candidate defines names its contract.
ENTRIES: dict[str, str] = {"loss_fn": SEQUENCE.name, "token_loss_fn": TOKEN.name}


def get_contract(name: str) -> Contract:
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"unknown loss contract {name!r}; known: {', '.join(sorted(CONTRACTS))}") from None
