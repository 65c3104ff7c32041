"""Helpers shared by the pipeline tests: tiny budgets, JSON-lines files, chat messages."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = ["rivers", "stars", "bread", "music"]
# Tiny budgets: 4 prompts, 2 samples of 8 new tokens, 1 optimizer step of batch 4, short sequences.
FAST_TRAIN = ["--max-steps", "1", "--batch-size", "4", "--max-length", "96"]
FAST_SAMPLING = ["--num-samples", "2", "--max-new-tokens", "8", "--sampling-batch-size", "8"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def bot(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]
