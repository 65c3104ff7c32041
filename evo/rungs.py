"""Fidelity rungs (successive halving): what a candidate trains and is scored with at a rung.

``fitness.rungs`` lists the rungs, cheapest first; the last is the full evaluation. At rung ``r`` a candidate
trains with ``budget`` of the training budget (``max_steps`` scaled when set, else ``num_train_epochs``) and is
scored on the first ``prompts`` of the held-out items (verifiable: the first topics; proxy: the first pairs;
MT-Bench and AlpacaEval: the first of ``max_questions``/``max_instances``, or of their 80/805 when unset), so
every rung's items are a subset of the next rung's and a candidate is paired with DPO at the same rung on the same
items. A promoted candidate trains again from the start at the next rung's budget (no checkpoint is carried
over)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from evo.config import FitnessConfig, RungConfig
from trainer.config import TrainingConfig

# The option of each evaluator that bounds how many held-out items it scores.
_ITEM_OPTIONS = {
    "verifiable": "n_heldout_topics",
    "proxy": "max_pairs",
    "mt_bench": "max_questions",
    "alpaca_eval": "max_instances",
    "alpaca_eval_lc": "max_instances",
}


# The full size of the fixed benchmarks when their option is unset: MT-Bench's questions, AlpacaEval's instructions.
_FIXED_SETS = {"mt_bench": 80, "alpaca_eval": 805, "alpaca_eval_lc": 805}


def rung_training(training: TrainingConfig, rung: RungConfig) -> TrainingConfig:
    """The training budget of a rung: a fraction of the optimizer steps (or of the epochs when steps are unset)."""
    if rung.budget == 1:
        return training
    if training.max_steps > 0:
        return dataclasses.replace(training, max_steps=max(1, round(training.max_steps * rung.budget)))
    return dataclasses.replace(training, num_train_epochs=training.num_train_epochs * rung.budget)


def _count_rows(path: str | None) -> int:
    if path is None or not Path(path).exists():
        raise ValueError("the proxy fitness at a cheap rung needs its held-out pairs to count them")
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip())


def _full_items(name: str, options: dict, heldout_path: str | None) -> int:
    option = _ITEM_OPTIONS[name]
    if options.get(option) is not None:
        full = int(options[option])
        if name == "proxy":
            full = min(full, _count_rows(options.get("data", heldout_path)))
        return full
    if name == "verifiable":
        from evaluators.verifiable import VerifiableSpec  # torch: loaded only when a verifiable rung is cut

        return VerifiableSpec.n_heldout_topics
    if name == "proxy":
        return _count_rows(options.get("data", heldout_path))
    return _FIXED_SETS[name]


def rung_fitness(fitness: FitnessConfig, rung: RungConfig, heldout_path: str | None) -> FitnessConfig:
    """The fitness of a rung: each evaluator limited to the first ``rung.prompts`` of its held-out items."""
    if rung.prompts == 1:
        return fitness
    names = list(fitness.weights) if fitness.kind == "weighted" else [fitness.kind]
    changes = {}
    for name in names:
        if name not in _ITEM_OPTIONS:
            raise ValueError(
                f"fitness {name!r} has no held-out subset for a cheap rung; known: {sorted(_ITEM_OPTIONS)}"
            )
        key = "alpaca_eval" if name.startswith("alpaca_eval") else name
        options = dict(changes.get(key, getattr(fitness, key)))
        full = _full_items(name, options, heldout_path)
        options[_ITEM_OPTIONS[name]] = max(1, math.ceil(full * rung.prompts - 1e-9))
        changes[key] = options
    return dataclasses.replace(fitness, **changes)


def promotions(ranked: int, fraction: float) -> int:
    """How many of ``ranked`` results at a rung go on to the next: ``round(ranked * fraction)``, at least one."""
    return max(1, math.floor(ranked * fraction + 0.5)) if ranked else 0
