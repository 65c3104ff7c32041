"""Shared fixtures: the tiny model's checkpoint and small preference files in every supported format."""

import json
from pathlib import Path

import pytest

from trainer.models import load_tokenizer, tiny_checkpoint

TOPICS = ["rivers", "stars", "bread", "music", "trees", "rain", "glass", "roads"]


@pytest.fixture(scope="session")
def tiny_path() -> str:
    return str(tiny_checkpoint())


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return load_tokenizer("tiny")


def _conversation(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def preference_rows(n: int = 16) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": _conversation("user", f"Write one lowercase sentence about {topic}."),
                "chosen": _conversation("assistant", f"a calm sentence about {topic} and nothing more."),
                "rejected": _conversation(
                    "assistant", f"LOUD, UPPERCASE, TEXT ABOUT {topic.upper()}, NUMBER {i}!"
                ),
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def preference_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", preference_rows())


@pytest.fixture
def spin_file(tmp_path) -> Path:
    rows = []
    for row in preference_rows():
        rows.append({"real": row["prompt"] + row["chosen"], "generated": row["prompt"] + row["rejected"]})
    return write_jsonl(tmp_path / "spin.jsonl", rows)


@pytest.fixture
def granular_file(tmp_path) -> Path:
    rows = []
    for i in range(16):
        topic = TOPICS[i % len(TOPICS)]
        correct = f"The answer about {topic} is {i + 2}."
        incorrect = f"The answer about {topic} is {i + 7}."
        start = incorrect.index(str(i + 7))
        flag = -1 if i % 2 == 0 else 1
        span = (
            [start, start + len(str(i + 7))] if flag == -1 else [correct.index(str(i + 2)), len(correct) - 1]
        )
        rows.append(
            {
                "prompt": f"Question {i}: what is the number for {topic}?",
                "correct_response": correct,
                "incorrect_response": incorrect,
                "masked_region": [span[0], span[1], flag],
            }
        )
    path = tmp_path / "granular.json"
    path.write_text(json.dumps(rows))
    return path
