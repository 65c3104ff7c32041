"""Small inputs for the pipelines on the tiny model: SFT conversations, prompts, seed pairs, granular rows
and verifiable-task pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import bot, user, write_jsonl
from tests.pipelines.helpers import PIPELINE_TOPICS


@pytest.fixture(scope="session", autouse=True)
def tiny_model(tiny_path) -> str:
    """The tiny checkpoint, built before any pipeline test runs its CLI."""
    return tiny_path


@pytest.fixture
def sft_file(tmp_path) -> Path:
    rows = [
        {"messages": user(f"Write one sentence about {t}.") + bot(f"a calm sentence about {t}.")}
        for t in PIPELINE_TOPICS
    ]
    return write_jsonl(tmp_path / "sft.jsonl", rows)


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    return write_jsonl(
        tmp_path / "prompts.jsonl", [{"prompt": f"Describe {t} briefly."} for t in PIPELINE_TOPICS]
    )


@pytest.fixture
def seed_file(tmp_path) -> Path:
    rows = [
        {
            "prompt": user(f"Say something about {t}."),
            "chosen": bot(f"quiet words on {t}."),
            "rejected": bot("NO!"),
        }
        for t in PIPELINE_TOPICS
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
