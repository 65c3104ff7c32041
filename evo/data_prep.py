"""The training pairs every candidate of a run is trained on, and the held-out pairs of the proxy fitness.

Built once per run before generation 0 (the verifiable builder caches its samples per model, seed and config,
so a resumed run or a second run with the same settings does not sample again)."""

from __future__ import annotations

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
    data = config.data
    if data.source == "synthetic":
        train, heldout = write_synthetic_pairs(run_dir / "data", data.synthetic_pairs)
        return TrainingData(train, heldout, {"n_train_pairs": data.synthetic_pairs})
    if data.source == "file":
        if not data.train_path:
            raise ValueError("data.source 'file' needs data.train_path")
        return TrainingData(Path(data.train_path), Path(data.heldout_path) if data.heldout_path else None)
    if data.source == "verifiable":
        from evaluators.verifiable_data import PairBuildConfig, build_pairs

        options = {"model": config.training.model, "seed": config.seed, **data.pair_build}
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        pairs = build_pairs(PairBuildConfig(**options))
        return TrainingData(pairs.train_path, pairs.proxy_path, dict(pairs.stats))
    raise ValueError(f"unknown data.source {data.source!r}: expected verifiable, synthetic or file")
