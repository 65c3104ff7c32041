"""MT-Bench answer generation, written in FastChat's answer layout (`model_answer/<model_id>.jsonl`).

Both turns are generated: the second turn sees the first question and the model's own first answer. Decoding
follows FastChat's per-category temperatures (greedy where the temperature is 0). Questions that already have
an answer in the file are not generated again, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import shortuuid

from trainer.chat import Messages
from trainer.generation import SamplingConfig, chat, choose_backend, load_model, sample_responses

# FastChat's fastchat/llm_judge/common.py (that module imports anthropic, so the values are restated here).
TEMPERATURE_CONFIG = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7


def load_jsonl_by_id(path: Path) -> dict[int, dict[str, Any]]:
    """Rows of a FastChat question/answer file keyed by `question_id` (the last row of an id wins)."""
    if not path.exists():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["question_id"]: row for row in rows}


def generate_answers(
    model: str,
    model_id: str,
    questions: Sequence[Mapping[str, Any]],
    answer_file: Path,
    max_new_tokens: int,
    batch_size: int,
    conv_template: str | None = None,
    seed: int = 0,
    backend: str = "auto",
    dtype: str = "auto",
) -> dict[int, dict[str, Any]]:
    """Answers to `questions`, generating only the missing ones; the file keeps answers to other questions too.
    `backend` and `dtype` as in `SamplingConfig`: the hf backend loads the model once for all turns, vLLM runs
    once per turn and temperature."""
    answers = load_jsonl_by_id(answer_file)
    missing = [q for q in questions if q["question_id"] not in answers]
    if not missing:
        return answers
    backend = choose_backend(backend)
    loaded = load_model(model, dtype) if backend == "hf" else None
    history: dict[int, Messages] = {q["question_id"]: [] for q in missing}
    replies: dict[int, list[str]] = {q["question_id"]: [] for q in missing}
    for turn in range(max(len(q["turns"]) for q in missing)):
        by_temperature: dict[float, list[Mapping[str, Any]]] = defaultdict(list)
        for question in missing:
            if turn < len(question["turns"]):
                by_temperature[TEMPERATURE_CONFIG.get(question["category"], DEFAULT_TEMPERATURE)].append(
                    question
                )
        for temperature, group in sorted(by_temperature.items()):
            conversations = [
                history[q["question_id"]] + [{"role": "user", "content": q["turns"][turn]}] for q in group
            ]
            config = SamplingConfig(
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                batch_size=batch_size,
                seed=seed + turn,
                backend=backend,
                dtype=dtype,
            )
            description = f"MT-Bench turn {turn + 1} (T={temperature})"
            if loaded is None:
                outputs = sample_responses(model, conversations, config, conv_template, description)
            else:
                outputs = chat(*loaded, conversations, config, conv_template, description)
            for question, conversation, output in zip(group, conversations, outputs, strict=True):
                history[question["question_id"]] = conversation + [
                    {"role": "assistant", "content": output[0]}
                ]
                replies[question["question_id"]].append(output[0])
    for question in missing:
        answers[question["question_id"]] = {
            "question_id": question["question_id"],
            "answer_id": shortuuid.uuid(),
            "model_id": model_id,
            "choices": [{"index": 0, "turns": replies[question["question_id"]]}],
            "tstamp": time.time(),
        }
    answer_file.parent.mkdir(parents=True, exist_ok=True)
    answer_file.write_text("".join(json.dumps(answers[qid]) + "\n" for qid in sorted(answers)))
    return answers
