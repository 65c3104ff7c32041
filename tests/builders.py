"""Plain helpers the tests share (no fixtures: those are in ``tests/conftest.py``): chat messages, small
preference / SPIN / granular rows, JSON-lines files, recipes, and running the search as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TOPICS = ["rivers", "stars", "bread", "music", "trees", "rain", "glass", "roads"]
# The loss types TRL 1.16's DPOTrainer documents, each of which the registry holds under the same name.
TRL_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
SHARED_DATA = Path(
    os.environ.get("EVOPO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def bot(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def preference_rows(n: int = 16) -> list[dict]:
    """Conversational pairs a policy can learn in a few steps: calm lowercase chosen, shouted rejected."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": user(f"Write one lowercase sentence about {topic}."),
                "chosen": bot(f"a calm sentence about {topic} and nothing more."),
                "rejected": bot(f"LOUD, UPPERCASE, TEXT ABOUT {topic.upper()}, NUMBER {i}!"),
            }
        )
    return rows


def spin_rows(n: int = 16) -> list[dict]:
    return [
        {"real": r["prompt"] + r["chosen"], "generated": r["prompt"] + r["rejected"]}
        for r in preference_rows(n)
    ]


def granular_rows(n: int = 16) -> list[dict]:
    """Rows in the granular format: a masked region [start, end, flag] in the incorrect (-1) or correct (+1)
    response; even rows mark the wrong number of the incorrect answer."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        correct = f"The answer about {topic} is {i + 2}."
        incorrect = f"The answer about {topic} is {i + 7}."
        flag = -1 if i % 2 == 0 else 1
        target, number = (incorrect, str(i + 7)) if flag == -1 else (correct, str(i + 2))
        start = target.index(number)
        rows.append(
            {
                "prompt": f"Question {i}: what is the number for {topic}?",
                "correct_response": correct,
                "incorrect_response": incorrect,
                "masked_region": [start, start + len(number), flag],
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_recipe(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


def launch(
    args: list[str], timeout: float = 900, env: dict | None = None, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``python -m evo.launch ARGS`` in a subprocess (wandb offline), as a user runs it."""
    # RAY_ADDRESS only when the test gives one: an earlier in-process ray.init() leaves its (stopped) cluster's
    # address in this process's environment
    inherited = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # COLUMNS: a wide terminal, so the leaderboard table's rows (checked by name) are not wrapped
    full_env = {
        **inherited,
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "250",
        **(env or {}),
    }
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "evo.launch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
