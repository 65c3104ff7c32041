"""Template preference pairs that need no sampling: the data of the ``tiny`` preset (tests, smoke runs).

Chosen answers follow the instruction (lower case, short, no commas); rejected ones break it. Held-out pairs use
topics never seen in training; confirmation pairs (``evo.confirm``) use a third list, seen by neither."""

from __future__ import annotations

import json
from pathlib import Path

TRAIN_TOPICS = [
    "rivers",
    "stars",
    "bread",
    "music",
    "trees",
    "rain",
    "glass",
    "roads",
    "bees",
    "clouds",
    "salt",
    "ink",
]
HELDOUT_TOPICS = ["owls", "copper", "tides", "maps", "wool", "lamps"]
CONFIRM_TOPICS = ["foxes", "kettles", "moss", "pebbles", "ferns", "candles", "sails", "honey"]


def _pair(topic: str, i: int) -> dict:
    return {
        "prompt": [
            {"role": "user", "content": f"In lower case and without commas, say one thing about {topic}."}
        ],
        "chosen": [{"role": "assistant", "content": f"{topic} are worth a quiet look number {i}"}],
        "rejected": [{"role": "assistant", "content": f"{topic.upper()}, WELL, ARE LOUD, NUMBER {i}!"}],
    }


def write_synthetic_pairs(directory: Path, n_train: int) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    train = [_pair(TRAIN_TOPICS[i % len(TRAIN_TOPICS)], i) for i in range(n_train)]
    heldout = [_pair(topic, i) for i, topic in enumerate(HELDOUT_TOPICS)]
    paths = directory / "train.jsonl", directory / "heldout.jsonl"
    for path, rows in zip(paths, (train, heldout), strict=True):
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return paths


def write_confirmation_pairs(directory: Path) -> Path:
    """The confirmation held-out pairs: topics neither the training nor the selection pairs use."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "confirm_heldout.jsonl"
    path.write_text("".join(json.dumps(_pair(topic, i)) + "\n" for i, topic in enumerate(CONFIRM_TOPICS)))
    return path
