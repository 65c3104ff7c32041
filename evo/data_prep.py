"""The training pairs every candidate of a run is trained on, and the held-out pairs of the proxy fitness.

Built once per run before generation 0 (the verifiable builder caches its samples per model, seed and config,
so a resumed run or a second run with the same settings does not sample again)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from evo.config import SearchConfig
from evo.synthetic import write_synthetic_pairs


@dataclass(frozen=True)
class TrainingData:
    train_path: Path
    heldout_path: Path | None
    stats: dict = field(default_factory=dict)


def prepare_data(config: SearchConfig, run_dir: Path) -> TrainingData:
    prepared = _prepare(config, run_dir)
    _check_proxy_pairs(config, prepared)
    limit = config.data.max_train_pairs
    if limit is None:
        return prepared
    rows = prepared.train_path.read_text().splitlines()
    random.Random(config.seed).shuffle(rows)
    subset = run_dir / "data" / f"train_first_{limit}.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    subset.write_text("\n".join(rows[:limit]) + "\n")
    return TrainingData(subset, prepared.heldout_path, {**prepared.stats, "max_train_pairs": limit})


def _check_proxy_pairs(config: SearchConfig, prepared: TrainingData) -> None:
    """The proxy fitness scores on held-out pairs: fail before any training when there are none."""
    fitness = config.fitness
    uses_proxy = fitness.kind == "proxy" or (fitness.kind == "weighted" and "proxy" in fitness.weights)
    if not uses_proxy or "data" in fitness.proxy:
        return
    path = prepared.heldout_path
    if path is None or not path.exists() or not path.read_text().strip():
        raise ValueError(
            "the proxy fitness needs held-out pairs and this data source made none: set "
            "data.pair_build.n_proxy_topics > 0 (verifiable), data.heldout_path (file), data.hub_heldout_split "
            "(hub), or fitness.proxy.data"
        )


def _prepare(config: SearchConfig, run_dir: Path) -> TrainingData:
    data = config.data
    if data.source == "synthetic":
        train, heldout = write_synthetic_pairs(run_dir / "data", data.synthetic_pairs)
        return TrainingData(train, heldout, {"n_train_pairs": data.synthetic_pairs})
    if data.source == "file":
        if not data.train_path:
            raise ValueError("data.source 'file' needs data.train_path")
        return TrainingData(Path(data.train_path), Path(data.heldout_path) if data.heldout_path else None)
    if data.source == "hub":
        return _hub_pairs(config, run_dir)
    if data.source == "verifiable":
        from evaluators.verifiable_data import PairBuildConfig, build_pairs

        options = {"model": config.training.model, "seed": config.seed, **data.pair_build}
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        pairs = build_pairs(PairBuildConfig(**options))
        return TrainingData(pairs.train_path, pairs.proxy_path, dict(pairs.stats))
    raise ValueError(f"unknown data.source {data.source!r}: expected verifiable, synthetic, file or hub")


def _hub_pairs(config: SearchConfig, run_dir: Path) -> TrainingData:
    """Download a preference dataset once and write its splits as JSONL in the run folder."""
    from datasets import load_dataset

    data = config.data
    if not data.hub_dataset:
        raise ValueError("data.source 'hub' needs data.hub_dataset")
    folder = run_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for role, split in (("train", data.hub_train_split), ("heldout", data.hub_heldout_split)):
        if split is None:
            continue
        path = folder / f"{role}.jsonl"
        if not path.exists():
            load_dataset(data.hub_dataset, split=split).to_json(str(path), lines=True)
        paths[role] = path
    return TrainingData(paths["train"], paths.get("heldout"), {"hub_dataset": data.hub_dataset})
