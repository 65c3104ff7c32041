"""Fitness functions behind one interface: `evaluate(model_dir, spec) -> Fitness(score, stderr, n, details)`.

Each evaluator has a frozen spec dataclass; `evaluate` dispatches on the spec's type, `make_spec(name, **options)`
builds a spec from a registry name (e.g. from a YAML recipe). Evaluator modules are imported on first use, so
importing this package does not import transformers, FastChat or alpaca_eval.

    verifiable     held-out pass rate on programmatically checked instructions (offline, the embedded default)
    proxy          held-out preference accuracy / reward margin vs a reference model (cheap)
    mt_bench       MT-Bench single-answer grading by an OpenAI-compatible judge
    alpaca_eval    AlpacaEval 2.0 length-controlled win rate (alias: alpaca_eval_lc)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.fitness import Fitness, PairedDelta, paired_delta

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "Fitness",
    "PairedDelta",
    "evaluate",
    "get",
    "make_spec",
    "paired_delta",
]


@dataclass(frozen=True)
class Evaluator:
    """Where an evaluator lives: its module and the name of its spec class there."""

    name: str
    module: str
    spec_class: str

    def spec_type(self) -> type:
        return getattr(importlib.import_module(self.module), self.spec_class)

    def function(self) -> Callable[[str | Path, Any], Fitness]:
        return importlib.import_module(self.module).evaluate


EVALUATORS: dict[str, Evaluator] = {
    "verifiable": Evaluator("verifiable", "evaluators.verifiable", "VerifiableSpec"),
    "proxy": Evaluator("proxy", "evaluators.proxy", "ProxySpec"),
    "mt_bench": Evaluator("mt_bench", "evaluators.mt_bench", "MTBenchSpec"),
    "alpaca_eval": Evaluator("alpaca_eval", "evaluators.alpaca_eval", "AlpacaEvalSpec"),
}
EVALUATORS["alpaca_eval_lc"] = EVALUATORS["alpaca_eval"]


def get(name: str) -> Evaluator:
    try:
        return EVALUATORS[name]
    except KeyError:
        raise KeyError(f"unknown evaluator {name!r}; known: {', '.join(sorted(EVALUATORS))}") from None


def make_spec(name: str, **options: Any) -> Any:
    """The spec of evaluator `name`; a nested `judge` mapping becomes a `JudgeConfig`, lists become tuples."""
    spec_type = get(name).spec_type()
    if isinstance(options.get("judge"), dict):
        from evaluators.judge import JudgeConfig

        defaults = {f.name: f.default_factory() for f in dataclasses.fields(spec_type) if f.name == "judge"}
        options["judge"] = dataclasses.replace(defaults.get("judge", JudgeConfig()), **options["judge"])
    options = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
    return spec_type(**options)


def evaluate(model_dir: str | Path, spec: Any) -> Fitness:
    """Run the evaluator whose spec type `spec` is."""
    for evaluator in EVALUATORS.values():
        if type(spec).__module__ == evaluator.module and type(spec).__name__ == evaluator.spec_class:
            return evaluator.function()(model_dir, spec)
    raise TypeError(f"{type(spec).__name__} is not the spec of any registered evaluator")
