"""What a confirmation trains and scores on: a held-out split disjoint from the one the search selected with, and
each fresh seed's training pairs.

The selection split is the run's fitness as configured (``FitnessConfig``): the verifiable fitness's first
``n_heldout_topics`` held-out topics (from ``first_heldout_topic``), the proxy fitness's held-out pairs. The
confirmation split (``ConfirmConfig``) takes the verifiable held-out topics after those, the synthetic data's
confirmation topics (``evo.synthetic.CONFIRM_TOPICS``), or ``confirm.heldout_path`` for the proxy fitness of file
or hub data. ``check_disjoint`` refuses a confirmation whose prompts overlap the selection's."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from evo.config import FitnessConfig, SearchConfig
from evo.data_prep import prepare_data
from evo.synthetic import write_confirmation_pairs

CONFIRMABLE = ("verifiable", "proxy")


@dataclasses.dataclass(frozen=True)
class ConfirmationSplit:
    """The fitness that scores on the confirmation split, and its held-out pairs (proxy) if any."""

    fitness: FitnessConfig
    heldout_path: str | None


def _parts(fitness: FitnessConfig) -> list[str]:
    names = list(fitness.weights) if fitness.kind == "weighted" else [fitness.kind]
    unsupported = [name for name in names if name not in CONFIRMABLE]
    if unsupported:
        raise ValueError(
            f"confirmation needs a held-out split disjoint from the selection one, which evo.confirm can carve for "
            f"{' and '.join(CONFIRMABLE)} only, not {', '.join(unsupported)}"
        )
    return names


def _verifiable_options(config: SearchConfig) -> dict:
    from evaluators.verifiable import VerifiableSpec
    from evaluators.verifiable_prompts import HELDOUT_TOPICS

    selection = config.fitness.verifiable
    start = selection.get("first_heldout_topic", 0) + selection.get(
        "n_heldout_topics", VerifiableSpec.n_heldout_topics
    )
    wanted = config.confirm.heldout_topics
    if start + wanted > len(HELDOUT_TOPICS):
        raise ValueError(
            f"confirm.heldout_topics {wanted}: the selection uses held-out topics up to {start} of "
            f"{len(HELDOUT_TOPICS)}, so at most {len(HELDOUT_TOPICS) - start} are left for confirmation (lower "
            "fitness.verifiable.n_heldout_topics or confirm.heldout_topics)"
        )
    return {**selection, "first_heldout_topic": start, "n_heldout_topics": wanted}


def _proxy_pairs(config: SearchConfig, run_dir: Path) -> str:
    if config.confirm.heldout_path:
        return config.confirm.heldout_path
    if config.data.source == "synthetic":
        return str(write_confirmation_pairs(run_dir / "confirm" / "data"))
    raise ValueError(
        "the proxy fitness's confirmation needs held-out pairs disjoint from the selection ones: set "
        "confirm.heldout_path"
    )


def confirmation_split(config: SearchConfig, run_dir: Path) -> ConfirmationSplit:
    """The confirmation split of a run; raises ``ValueError`` with what to set when it cannot be carved."""
    names = _parts(config.fitness)
    changes: dict = {}
    heldout = None
    if "verifiable" in names:
        changes["verifiable"] = _verifiable_options(config)
    if "proxy" in names:
        heldout = _proxy_pairs(config, run_dir)
        changes["proxy"] = {**config.fitness.proxy, "data": heldout}
    split = ConfirmationSplit(dataclasses.replace(config.fitness, **changes), heldout)
    check_disjoint(selection_prompts(config, run_dir), prompts_of(split.fitness, split.heldout_path))
    return split


def prompts_of(fitness: FitnessConfig, heldout_path: str | None) -> set[str]:
    """Every held-out prompt a fitness scores on (JSON text, comparable across sources)."""
    from evaluators import make_spec

    prompts: set[str] = set()
    for name in _parts(fitness):
        if name == "verifiable":
            from evaluators.verifiable import heldout_prompts

            prompts |= {p.text for p in heldout_prompts(make_spec("verifiable", **fitness.verifiable))}
        else:
            from trainer.data import normalize_rows, read_rows

            path = fitness.proxy.get("data", heldout_path)
            prompts |= {json.dumps(r["prompt"], sort_keys=True) for r in normalize_rows(read_rows(path))[1]}
    return prompts


def selection_prompts(config: SearchConfig, run_dir: Path) -> set[str]:
    """The held-out prompts the search selected with."""
    heldout = prepare_data(config, run_dir).heldout_path if "proxy" in _parts(config.fitness) else None
    return prompts_of(config.fitness, str(heldout) if heldout else None)


def check_disjoint(selection: set[str], confirmation: set[str]) -> None:
    shared = selection & confirmation
    if shared:
        raise ValueError(
            f"the confirmation held-out set shares {len(shared)} prompt(s) with the selection set, e.g. "
            f"{sorted(shared)[0][:200]!r}: a confirmation must score on prompts the search never selected with"
        )
    if not confirmation:
        raise ValueError("the confirmation held-out set is empty")


def seed_train_path(config: SearchConfig, run_dir: Path, seed: int) -> str:
    """The training pairs of fresh seed ``seed``: a fresh draw of ``data.max_train_pairs`` from all the run's
    pairs when that cap leaves some out (``confirm.redraw_pairs``), else the run's pairs (the seed then changes
    the data order and new weights only)."""
    limit = config.data.max_train_pairs
    if limit is None or not config.confirm.redraw_pairs:
        return str(prepare_data(config, run_dir).train_path)
    everything = prepare_data(
        dataclasses.replace(config, data=dataclasses.replace(config.data, max_train_pairs=None)), run_dir
    )
    rows = [row for row in everything.train_path.read_text().splitlines() if row.strip()]
    random.Random(seed).shuffle(rows)
    path = run_dir / "confirm" / "data" / f"train_seed{seed}_first_{limit}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows[:limit]) + "\n")
    return str(path)
