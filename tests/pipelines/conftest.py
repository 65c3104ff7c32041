"""Small inputs for the pipelines on the tiny model: SFT conversations, prompts, seed pairs, granular rows
and verifiable-task pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipelines.helpers import TOPICS, bot, user, write_jsonl
from trainer.models import tiny_checkpoint


@pytest.fixture(scope="session", autouse=True)
def tiny_model() -> str:
    return str(tiny_checkpoint())


@pytest.fixture
def sft_file(tmp_path) -> Path:
    rows = [
        {"messages": user(f"Write one sentence about {t}.") + bot(f"a calm sentence about {t}.")}
        for t in TOPICS
    ]
    return write_jsonl(tmp_path / "sft.jsonl", rows)


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Describe {t} briefly."} for t in TOPICS])


@pytest.fixture
def seed_file(tmp_path) -> Path:
    rows = [
        {
            "prompt": user(f"Say something about {t}."),
            "chosen": bot(f"quiet words on {t}."),
            "rejected": bot("NO!"),
        }
        for t in TOPICS
    ]
    return write_jsonl(tmp_path / "seed.jsonl", rows)


@pytest.fixture
def verifiable_pairs_file(tmp_path) -> Path:
    """West-of-N pairs as the verifiable data builder writes them (``id`` and ``family`` extra columns)."""
    from evaluators.verifiable_prompts import make_prompt

    rows = []
    for topic in ("coffee", "volcano", "ocean", "piano", "bicycle", "garden", "library", "rainbow"):
        prompt = make_prompt("lowercase", topic, 0)
        rows.append(
            {
                "prompt": user(prompt.text),
                "chosen": bot(f"all about the {topic}, quietly."),
                "rejected": bot(f"ALL ABOUT THE {topic.upper()}!"),
                "id": prompt.id,
                "family": prompt.family,
            }
        )
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


@pytest.fixture
def granular_file(tmp_path) -> Path:
    rows = []
    for i in range(8):
        topic = TOPICS[i % len(TOPICS)]
        correct, incorrect = f"The count for {topic} is {i + 2}.", f"The count for {topic} is {i + 7}."
        flag = 1 if i % 2 else -1
        target, number = (correct, str(i + 2)) if flag == 1 else (incorrect, str(i + 7))
        start = target.index(number)
        rows.append(
            {
                "prompt": f"Question {i}: what is the count for {topic}?",
                "correct_response": correct,
                "incorrect_response": incorrect,
                "masked_region": [start, start + len(number), flag],
            }
        )
    path = tmp_path / "granular.json"
    path.write_text(json.dumps(rows))
    return path
