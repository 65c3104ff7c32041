"""Weighted sums of sequence-level losses: TRL's ``loss_type=[...]`` with ``loss_weights=[...]``.

A combination is named by its terms, ``"0.8*sigmoid+0.2*bco_pair+sft"`` (a term without a weight has weight 1,
TRL's default); ``rpo`` is the registered ``sigmoid+sft``. The per-pair loss is ``sum_k w_k * loss_k``, whose batch
mean is TRL's ``sum_k w_k * mean(loss_k)``. Every term uses the trainer's beta, as in TRL. A parameter that
several terms share (TRL's single ``label_smoothing``) takes one value for all of them; its default is the first
such term's."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence

import torch

from trainer.losses.contract import LossSpec

SEQUENCE_ARGS = (
    "policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta"
)
LENGTH_ARGS = "chosen_lengths, rejected_lengths"


def parse_terms(name: str) -> list[tuple[float, str]]:
    """``"0.8*sigmoid+sft"`` -> ``[(0.8, "sigmoid"), (1.0, "sft")]``."""
    terms = []
    for term in name.split("+"):
        weight, _, loss = term.strip().rpartition("*")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(
                f"loss combination {name!r}: weight {weight!r} of {loss!r} is not a number"
            ) from None
        if not loss or not math.isfinite(value):
            raise ValueError(f"loss combination {name!r}: each term is 'weight*loss' or 'loss', got {term!r}")
        terms.append((value, loss.strip()))
    return terms


class WeightedSum:
    """``sum_k w_k * loss_k(...)``; each term receives the lengths only when its spec declares them."""

    def __init__(self, terms: Sequence[tuple[float, LossSpec, Callable[..., torch.Tensor]]]) -> None:
        self.terms = list(terms)

    def __call__(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
        beta: float,
        chosen_lengths: torch.Tensor | None = None,
        rejected_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        args = (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
            beta,
        )
        lengths = {"chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths}
        total = None
        for weight, spec, fn in self.terms:
            value = weight * fn(*args, **(lengths if spec.needs_lengths else {}))
            total = value if total is None else total + value
        return total


def combined_spec(name: str, terms: Sequence[tuple[float, LossSpec]]) -> LossSpec:
    """The spec of ``sum_k w_k * loss_k`` over registered sequence-level specs."""
    if not terms:
        raise ValueError(f"loss combination {name!r} has no terms")
    for _, spec in terms:
        if spec.level != "sequence":
            raise ValueError(
                f"loss combination {name!r}: {spec.name!r} is token-level; only sequence losses combine"
            )
    defaults: dict[str, float] = {}
    for _, spec in terms:
        for key, value in spec.defaults.items():
            if key != "beta":
                defaults.setdefault(key, value)

    def factory(**params: float) -> WeightedSum:
        built = []
        for weight, spec in terms:
            own = {key: value for key, value in params.items() if key in spec.defaults}
            built.append((weight, spec, spec.build(**own)))
        return WeightedSum(built)

    return LossSpec(
        name=name,
        level="sequence",
        factory=factory,
        source=_source(name, terms),
        needs_lengths=any(spec.needs_lengths for _, spec in terms),
        reference_free=all(spec.reference_free for _, spec in terms),
        defaults=defaults,
    )


def _source(name: str, terms: Sequence[tuple[float, LossSpec]]) -> str:
    """Self-contained source: each term's function, then ``name`` (or ``loss_fn``) summing them."""
    entry = name if name.isidentifier() else "loss_fn"
    needs_lengths = any(spec.needs_lengths for _, spec in terms)
    signature = f"{SEQUENCE_ARGS}, {LENGTH_ARGS}" if needs_lengths else SEQUENCE_ARGS
    sources, calls = {}, []
    for weight, spec in terms:
        sources.setdefault(spec.name, textwrap.dedent(spec.source).strip())
        call_args = f"{SEQUENCE_ARGS}, {LENGTH_ARGS}" if spec.needs_lengths else SEQUENCE_ARGS
        calls.append(f"{weight!r} * {spec.name}({call_args})")
    body = "\n        + ".join(calls)
    wrapper = f"def {entry}({signature}):\n    return (\n        {body}\n    )\n"
    return "\n\n\n".join([*sources.values(), wrapper])
