"""Name -> LossSpec registry holding the fixed methods next to discovered losses.

TRL's ``DPOTrainer`` loss types are registered under TRL's names with TRL's meaning (``sequence``, ``discopop``,
``trl_menu``), SimPO, ORPO and paired KTO beside them (``standalone``). A name of the form
``"0.8*sigmoid+0.2*bco_pair+sft"`` is a weighted sum (TRL's ``loss_weights``, ``combination``); ``rpo`` is the
registered ``sigmoid+sft``.

A discovered loss from the archive enters through ``discovered_loss_spec`` with its (sandbox-compiled) callable
and is trained on exactly the same code path as the built-ins."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from trainer.losses import discopop, sequence, spa, standalone, tdpo, trl_menu
from trainer.losses.combination import combined_spec, parse_terms
from trainer.losses.contract import Level, LossSpec

_REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"loss {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_loss_spec(name: str) -> LossSpec:
    """A registered loss, or the weighted sum a ``"w*a+b"`` name describes."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if "+" in name or "*" in name:
        return combined_spec(name, [(weight, get_loss_spec(term)) for weight, term in parse_terms(name)])
    raise KeyError(f"unknown loss {name!r}; registered: {', '.join(sorted(_REGISTRY))}")


def loss_names(level: Level | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if level is None or s.level == level)


def discovered_loss_spec(
    name: str,
    fn: Callable,
    source: str,
    level: Level = "sequence",
    needs_lengths: bool = False,
    reference_free: bool = False,
) -> LossSpec:
    """A spec for a loss that is not in the registry (an LLM proposal compiled by the sandbox)."""
    return LossSpec(
        name=name,
        level=level,
        factory=lambda: fn,
        source=source,
        needs_lengths=needs_lengths,
        reference_free=reference_free,
    )


def _sequence(
    fn: Callable, needs_lengths: bool = False, reference_free: bool = False, **defaults: float
) -> LossSpec:
    def factory(**params: float) -> Callable:
        return functools.partial(fn, **params) if params else fn

    return LossSpec(
        fn.__name__,
        "sequence",
        factory,
        inspect.getsource(fn),
        needs_lengths=needs_lengths,
        reference_free=reference_free,
        defaults=dict(defaults),
    )


for _fn in (sequence.sigmoid, sequence.hinge, sequence.ipo_sum, sequence.spin, sequence.spin_hinge):
    register(_sequence(_fn))
register(_sequence(discopop.discopop, tau=0.05))
for _fn in (discopop.padll, discopop.aqfl, discopop.aql, discopop.cell, discopop.dbaql, discopop.pfl):
    register(_sequence(_fn))

for _fn in (trl_menu.ipo, trl_menu.sigmoid_norm):
    register(_sequence(_fn, needs_lengths=True))
register(_sequence(trl_menu.sft, needs_lengths=True, reference_free=True))
register(_sequence(trl_menu.exo_pair, label_smoothing=1e-3))
register(_sequence(trl_menu.robust, label_smoothing=0.1))
for _fn in (trl_menu.aot, trl_menu.aot_unpaired):
    register(_sequence(_fn, label_smoothing=0.0))
for _fn in (trl_menu.nca_pair, trl_menu.bco_pair, trl_menu.sppo_hard, trl_menu.apo_zero, trl_menu.apo_down):
    register(_sequence(_fn))
register(
    _sequence(
        standalone.simpo,
        needs_lengths=True,
        reference_free=True,
        beta=2.0,
        gamma_beta_ratio=0.25,
        label_smoothing=0.0,
    )
)
register(_sequence(standalone.orpo, needs_lengths=True, reference_free=True, beta=0.1))
register(_sequence(standalone.kto_pair))
register(combined_spec("rpo", [(1.0, get_loss_spec("sigmoid")), (1.0, get_loss_spec("sft"))]))

register(LossSpec("tdpo1", "token", lambda: tdpo.tdpo1, inspect.getsource(tdpo.tdpo1), needs_kl=True))
register(
    LossSpec(
        "tdpo2",
        "token",
        tdpo.make_tdpo2,
        inspect.getsource(tdpo.make_tdpo2),
        needs_kl=True,
        defaults={"alpha": 0.5},
    )
)
register(
    LossSpec(
        "granular",
        "token",
        lambda: tdpo.granular_dpo,
        inspect.getsource(tdpo.granular_dpo),
        needs_token_weights=True,
    )
)
register(
    LossSpec(
        "granular_tdpo",
        "token",
        tdpo.make_tdpo2,
        inspect.getsource(tdpo.make_tdpo2),
        needs_kl=True,
        needs_token_weights=True,
        defaults={"alpha": 0.5},
    )
)
register(
    LossSpec(
        "spa",
        "token",
        spa.SelfRefinementLoss,
        inspect.getsource(spa.SelfRefinementLoss),
        extrapolation_param="lam",
        defaults={"alpha": 0.1, "threshold": 0.1, "window": 50, "lam": 0.5, "warmup": 0.2},
    )
)
