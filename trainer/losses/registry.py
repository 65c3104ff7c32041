"""Name -> LossSpec registry holding the fixed methods next to discovered losses.

A discovered loss from the archive enters through ``discovered_loss_spec`` with its (sandbox-compiled) callable
and is trained on exactly the same code path as the built-ins."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from trainer.losses import discopop, sequence, spa, tdpo
from trainer.losses.contract import Level, LossSpec

_REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"loss {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_loss_spec(name: str) -> LossSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def loss_names(level: Level | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if level is None or s.level == level)


def discovered_loss_spec(name: str, fn: Callable, source: str, level: Level = "sequence") -> LossSpec:
    """A spec for a loss that is not in the registry (an LLM proposal compiled by the sandbox)."""
    return LossSpec(name=name, level=level, factory=lambda: fn, source=source)


def _sequence(fn: Callable, **defaults: float) -> LossSpec:
    def factory(**params: float) -> Callable:
        return functools.partial(fn, **params) if params else fn

    return LossSpec(fn.__name__, "sequence", factory, inspect.getsource(fn), defaults=dict(defaults))


for _fn in (sequence.sigmoid, sequence.hinge, sequence.ipo, sequence.spin, sequence.spin_hinge):
    register(_sequence(_fn))
register(_sequence(discopop.discopop, tau=0.05))
for _fn in (discopop.padll, discopop.aqfl, discopop.aql, discopop.cell, discopop.dbaql, discopop.pfl):
    register(_sequence(_fn))

register(LossSpec("tdpo1", "token", lambda: tdpo.tdpo1, inspect.getsource(tdpo.tdpo1), needs_kl=True))
register(
    LossSpec(
        "tdpo2", "token", tdpo.make_tdpo2, inspect.getsource(tdpo.make_tdpo2), needs_kl=True, defaults={"alpha": 0.5}
    )
)
register(
    LossSpec(
        "granular", "token", lambda: tdpo.granular_dpo, inspect.getsource(tdpo.granular_dpo), needs_token_weights=True
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
        defaults={"alpha": 0.1, "percentile": 10.0, "window": 512, "lam": 0.5, "warmup": 0.2},
    )
)
