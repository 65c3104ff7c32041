"""Training pairs for the verifiable task: sample the policy, label with the checkers, pair West-of-N.

For every training prompt the policy samples `samples_per_prompt` responses; the checkers label them; a prompt
with at least one passing and one failing response yields up to `pairs_per_prompt` pairs (a passing response
chosen, a failing one rejected, distinct combinations drawn at random). Prompts where every sample passes or
every sample fails carry no preference and are dropped.

Output: TRL's conversational preference format, one JSON object per line:
``{"prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}], "rejected": [...], "id", "family"}``
(`id` and `family` are extra columns the trainer ignores). Pairs from `n_proxy_topics` further training-pool
topics (never the held-out evaluation topics) go to a separate file for the proxy evaluator.

Results are cached under `<cache root>/verifiable/<model>-seed<seed>-<config hash>/` so that every candidate of a
run, and every rerun, trains on the same pairs without sampling again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluators.verifiable_families import DEFAULT_FAMILIES
from evaluators.verifiable_prompts import TRAIN_TOPICS, Prompt, make_prompts
from trainer.generation import SamplingConfig, chat, load_model
from trainer.models import EMBEDDED, TINY, cache_root


@dataclass(frozen=True)
class PairBuildConfig:
    """What to sample and how to pair it; every field is part of the cache key."""

    model: str = EMBEDDED
    families: tuple[str, ...] = DEFAULT_FAMILIES
    n_train_topics: int = 24
    n_proxy_topics: int = 4
    samples_per_prompt: int = 4
    pairs_per_prompt: int = 1
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 64
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train_topics + self.n_proxy_topics > len(TRAIN_TOPICS):
            raise ValueError(f"n_train_topics + n_proxy_topics must be <= {len(TRAIN_TOPICS)}")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2 to form pairs")

    def cache_key(self) -> str:
        fields = asdict(self) | {"model": _model_identity(self.model)}
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model).name or self.model)
        return f"{slug}-seed{self.seed}-{digest}"


@dataclass(frozen=True)
class PairSet:
    """Where the built pairs are, and what building them found."""

    directory: Path
    train_path: Path
    proxy_path: Path
    stats: Mapping[str, Any] = field(default_factory=dict)


def _model_identity(model: str) -> str:
    if model in (EMBEDDED, TINY):
        return model
    path = Path(model)
    return str(path.resolve()) if path.exists() else model


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def west_of_n(
    prompt: Prompt, responses: Sequence[str], labels: Sequence[bool], count: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Up to `count` (passing, failing) pairs of distinct responses for `prompt`, in TRL conversational format."""
    passing = sorted({r for r, ok in zip(responses, labels, strict=True) if ok})
    failing = sorted({r for r, ok in zip(responses, labels, strict=True) if not ok})
    combos = list(itertools.product(passing, failing))
    rng.shuffle(combos)
    return [
        {
            "prompt": [{"role": "user", "content": prompt.text}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "id": prompt.id,
            "family": prompt.family,
        }
        for chosen, rejected in combos[:count]
    ]


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _sample_stats(prompts: Sequence[Prompt], labels: Sequence[Sequence[bool]]) -> dict[str, Any]:
    passed, total, mixed = Counter(), Counter(), Counter()
    for prompt, row in zip(prompts, labels, strict=True):
        passed[prompt.family] += sum(row)
        total[prompt.family] += len(row)
        mixed[prompt.family] += 0 < sum(row) < len(row)
    return {
        "sample_pass_rate": {f: passed[f] / total[f] for f in total},
        "mixed_prompts": dict(mixed),
        "n_mixed_prompts": sum(mixed.values()),
    }


def build_pairs(config: PairBuildConfig, cache_dir: Path | None = None, rebuild: bool = False) -> PairSet:
    """Sample, label and pair (or load the cached result of the same config)."""
    directory = (cache_dir or cache_root() / "verifiable") / config.cache_key()
    result = PairSet(directory, directory / "pairs.jsonl", directory / "proxy_pairs.jsonl")
    meta_path = directory / "meta.json"
    if meta_path.exists() and not rebuild:
        return PairSet(
            result.directory, result.train_path, result.proxy_path, json.loads(meta_path.read_text())
        )

    train_topics = TRAIN_TOPICS[: config.n_train_topics]
    proxy_topics = TRAIN_TOPICS[len(TRAIN_TOPICS) - config.n_proxy_topics :] if config.n_proxy_topics else ()
    prompts = make_prompts(config.families, train_topics + proxy_topics, config.seed)
    sampling = SamplingConfig(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        num_samples=config.samples_per_prompt,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    started = time.monotonic()
    model, tokenizer = load_model(config.model)
    conversations = [[{"role": "user", "content": p.text}] for p in prompts]
    responses = chat(model, tokenizer, conversations, sampling, description="sampling training responses")
    sampling_seconds = time.monotonic() - started
    labels = [[p.check(r) for r in rows] for p, rows in zip(prompts, responses, strict=True)]

    rng = random.Random(config.seed)
    train_rows: list[dict[str, Any]] = []
    proxy_rows: list[dict[str, Any]] = []
    for prompt, rows, row_labels in zip(prompts, responses, labels, strict=True):
        target = proxy_rows if prompt.topic in proxy_topics else train_rows
        target.extend(west_of_n(prompt, rows, row_labels, config.pairs_per_prompt, rng))
    rng.shuffle(train_rows)

    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=_ensure(directory.parent)))
    _write_jsonl(
        scratch / "samples.jsonl",
        [
            p.to_json() | {"responses": rows, "passed": row_labels}
            for p, rows, row_labels in zip(prompts, responses, labels, strict=True)
        ],
    )
    _write_jsonl(scratch / result.train_path.name, train_rows)
    _write_jsonl(scratch / result.proxy_path.name, proxy_rows)
    stats = {
        "config": asdict(config),
        "n_prompts": len(prompts),
        "n_train_pairs": len(train_rows),
        "n_proxy_pairs": len(proxy_rows),
        "pairs_per_family": dict(Counter(row["family"] for row in train_rows)),
        "sampling_seconds": round(sampling_seconds, 1),
    } | _sample_stats(prompts, labels)
    (scratch / meta_path.name).write_text(json.dumps(stats, indent=2) + "\n")
    stats = json.loads(json.dumps(stats))  # the same types as a cached build's
    shutil.rmtree(directory, ignore_errors=True)  # a rebuild replaces the old pairs
    try:
        scratch.rename(directory)  # atomic: readers see a complete build or none
    except OSError:  # a concurrent build of the same config finished first: keep that one
        shutil.rmtree(scratch, ignore_errors=True)
        if not meta_path.exists():
            raise
        stats = json.loads(meta_path.read_text())
    return PairSet(result.directory, result.train_path, result.proxy_path, stats)
