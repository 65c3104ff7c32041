"""MT-Bench with single-answer grading by any OpenAI-compatible judge, in FastChat's file layout.

    python -m evaluators.mt_bench --model PATH_OR_ID --output-dir DIR --judge-base-url URL --judge-model NAME

Turn 1 is graded with `single-v1` (or `single-math-v1` with the reference answer, for math, reasoning and coding),
turn 2 with `single-v1-multi-turn` / `single-math-v1-multi-turn`, exactly as FastChat's gen_judgment does. The
judge runs on a thread pool; every judgment is appended to `model_judgment/<judge>_single.jsonl` as it arrives,
and a rerun reuses each stored judgment whose prompt is unchanged, so it resumes with no repeated judge calls.
Score = mean rating over all graded turns without the unparseable ones (rating -1), as FastChat's show_result.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastchat.conversation import get_conv_template

from evaluators.cli import print_fitness
from evaluators.fitness import Fitness, mean_stderr
from evaluators.judge import (
    ERROR_OUTPUT,
    JudgeConfig,
    add_judge_arguments,
    ask,
    judge_from_arguments,
    parse_rating,
    run_parallel,
)
from evaluators.mt_bench_answers import generate_answers, load_jsonl_by_id
from evaluators.sources import MT_BENCH_JUDGE_PROMPTS, MT_BENCH_QUESTIONS, MT_BENCH_REFERENCE_ANSWERS, fetch
from trainer.models import cache_root

# FastChat's fastchat/llm_judge/common.py.
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
UNRATED = (
    -1
)  # a judgment row's score when the judge gave no rating, as FastChat's files and show_result have it
JUDGE_MAX_TOKENS = 2048


@dataclass(frozen=True)
class MTBenchSpec:
    """Data files (paths or URLs), answer generation and judge settings."""

    judge: JudgeConfig = field(default_factory=lambda: JudgeConfig(max_tokens=JUDGE_MAX_TOKENS))
    output_dir: str | None = None  # default: <model_dir>/mt_bench, or the cache for a preset/hub model
    model_id: str | None = None  # default: the model directory's name
    question_file: str = MT_BENCH_QUESTIONS
    judge_prompts: str = MT_BENCH_JUDGE_PROMPTS
    reference_answers: str = MT_BENCH_REFERENCE_ANSWERS
    question_ids: tuple[int, ...] = ()  # empty: all questions (after max_questions)
    max_questions: int | None = None
    max_new_tokens: int = 1024
    batch_size: int = 8
    conv_template: str | None = None  # a FastChat conversation template name instead of the chat template
    seed: int = 0
    backend: str = "auto"  # answer generation, as trainer.generation.SamplingConfig: auto is vLLM on a GPU
    dtype: str = "auto"


@dataclass(frozen=True)
class JudgeTask:
    question_id: int
    turn: int
    judge: tuple[str, str]  # (judge model, judge prompt name), FastChat's `judge` field
    system_prompt: str
    user_prompt: str

    @property
    def key(self) -> tuple[int, int, str, str]:
        return (self.question_id, self.turn, *self.judge)


def load_judge_prompts(path: Path) -> dict[str, dict[str, Any]]:
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["name"]: row for row in rows}


def load_questions(spec: MTBenchSpec) -> list[dict[str, Any]]:
    questions = list(load_jsonl_by_id(fetch(spec.question_file)).values())
    if spec.question_ids:
        wanted = set(spec.question_ids)
        questions = [q for q in questions if q["question_id"] in wanted]
    return questions[: spec.max_questions]


def make_tasks(
    questions: Sequence[Mapping[str, Any]],
    answers: Mapping[int, Mapping[str, Any]],
    judge_prompts: Mapping[str, Mapping[str, Any]],
    references: Mapping[int, Mapping[str, Any]],
    judge_model: str,
) -> list[JudgeTask]:
    """One single-answer grading task per question and turn, with FastChat's prompt choice and formatting."""
    tasks = []
    for question in questions:
        qid = question["question_id"]
        turns = answers[qid]["choices"][0]["turns"]
        needs_reference = question["category"] in NEED_REF_CATS
        if needs_reference and qid not in references:
            raise ValueError(
                f"question {qid} ({question['category']}) needs a reference answer; none in the file"
            )
        reference = references[qid]["choices"][0]["turns"] if needs_reference else []
        for turn in range(1, min(len(question["turns"]), 2) + 1):
            name = ("single-math-v1" if needs_reference else "single-v1") + (
                "-multi-turn" if turn == 2 else ""
            )
            template = judge_prompts[name]
            kwargs = {f"ref_answer_{i + 1}": reference[i] for i in range(turn)} if needs_reference else {}
            if turn == 1:
                user_prompt = template["prompt_template"].format(
                    question=question["turns"][0], answer=turns[0], **kwargs
                )
            else:
                user_prompt = template["prompt_template"].format(
                    question_1=question["turns"][0],
                    question_2=question["turns"][1],
                    answer_1=turns[0],
                    answer_2=turns[1],
                    **kwargs,
                )
            tasks.append(JudgeTask(qid, turn, (judge_model, name), template["system_prompt"], user_prompt))
    return tasks


def judge_messages(task: JudgeTask) -> list[dict[str, str]]:
    """The judge conversation, built as FastChat builds it for an OpenAI judge."""
    conv = get_conv_template("chatgpt")
    conv.set_system_message(task.system_prompt)
    conv.append_message(conv.roles[0], task.user_prompt)
    conv.append_message(conv.roles[1], None)
    return conv.to_openai_api_messages()


def judgment_file(output_dir: Path, judge_model: str) -> Path:
    return output_dir / "model_judgment" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', judge_model)}_single.jsonl"


def _row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["question_id"], row["turn"], *row["judge"], row["model"])


def run_judgments(
    tasks: Sequence[JudgeTask], model_id: str, path: Path, judge: JudgeConfig
) -> tuple[list[dict], int]:
    """Judgment rows for `tasks` (stored ones reused) and the number of new judge calls made."""
    stored = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )
    reusable = {
        _row_key(row): row for row in stored if row["judgment"] != ERROR_OUTPUT and row["model"] == model_id
    }
    results: dict[tuple[Any, ...], dict] = {}
    todo = []
    for task in tasks:
        row = reusable.get((*task.key, model_id))
        if row is not None and row["user_prompt"] == task.user_prompt:
            results[task.key] = row
        else:
            todo.append(task)

    path.parent.mkdir(parents=True, exist_ok=True)
    lock, client = threading.Lock(), judge.client() if todo else None

    def grade(task: JudgeTask) -> dict:
        reply = ask(client, judge, judge_messages(task))
        rating = parse_rating(reply.text)  # NaN for ERROR_OUTPUT too
        row = {
            "question_id": task.question_id,
            "model": model_id,
            "judge": list(task.judge),
            "user_prompt": task.user_prompt,
            "judgment": reply.text,
            "score": UNRATED if math.isnan(rating) else rating,
            "turn": task.turn,
            "tstamp": time.time(),
        } | ({"error": reply.error} if reply.error else {})  # why the turn is unrated: every try's fault
        with lock, path.open("a") as out:  # appended at once: an interrupted run keeps what it paid for
            out.write(json.dumps(row) + "\n")
        return row

    for task, row in zip(todo, run_parallel(grade, todo, judge.parallel, "MT-Bench judge"), strict=True):
        results[task.key] = row
    # Compact: one row per (question, turn, judge, model), other models' rows kept, as FastChat's tools expect.
    current = {_row_key(row): row for row in stored} | {_row_key(row): row for row in results.values()}
    path.write_text("".join(json.dumps(row) + "\n" for row in current.values()))
    return [results[task.key] for task in tasks], len(todo)


def score(rows: Sequence[Mapping[str, Any]], categories: Mapping[int, str]) -> Fitness:
    """Mean rating over graded turns (`UNRATED` excluded), with per-turn/category means and failure counts."""
    rated = [row for row in rows if row["score"] != UNRATED]
    mean, stderr = mean_stderr([float(row["score"]) for row in rated])
    by_turn, by_category = defaultdict(list), defaultdict(list)
    for row in rated:
        by_turn[row["turn"]].append(float(row["score"]))
        by_category[categories[row["question_id"]]].append(float(row["score"]))
    errors = sum(row["judgment"] == ERROR_OUTPUT for row in rows)
    details = {
        "per_item": {f"{row['question_id']}/turn{row['turn']}": float(row["score"]) for row in rated},
        "per_turn": {str(turn): sum(v) / len(v) for turn, v in sorted(by_turn.items())},
        "per_category": {category: sum(v) / len(v) for category, v in sorted(by_category.items())},
        "n_judgments": len(rows),
        "n_unparseable": sum(row["score"] == UNRATED for row in rows) - errors,
        "n_errors": errors,
    }
    return Fitness(mean, stderr, len(rated), details)


def default_output_dir(model_dir: str | Path, model_id: str) -> Path:
    path = Path(model_dir)
    return path / "mt_bench" if path.is_dir() else cache_root() / "mt_bench" / model_id


def evaluate(model_dir: str | Path, spec: MTBenchSpec) -> Fitness:
    """MT-Bench score of the model at `model_dir` (checkpoint directory, hub id or preset name)."""
    model_id = spec.model_id or Path(model_dir).name
    output_dir = Path(spec.output_dir) if spec.output_dir else default_output_dir(model_dir, model_id)
    questions = load_questions(spec)
    answer_file = output_dir / "model_answer" / f"{model_id}.jsonl"
    answers = generate_answers(
        str(model_dir),
        model_id,
        questions,
        answer_file,
        spec.max_new_tokens,
        spec.batch_size,
        spec.conv_template,
        spec.seed,
        spec.backend,
        spec.dtype,
    )
    references = load_jsonl_by_id(fetch(spec.reference_answers))
    tasks = make_tasks(
        questions, answers, load_judge_prompts(fetch(spec.judge_prompts)), references, spec.judge.model
    )
    path = judgment_file(output_dir, spec.judge.model)
    rows, new_calls = run_judgments(tasks, model_id, path, spec.judge)
    fitness = score(rows, {q["question_id"]: q["category"] for q in questions})
    files = {"answer_file": str(answer_file), "judgment_file": str(path)}
    return Fitness(
        fitness.score, fitness.stderr, fitness.n, dict(fitness.details) | files | {"judge_calls": new_calls}
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m evaluators.mt_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint dir, hub id, or smollm2-135m-instruct / tiny"
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument(
        "--model-id", default=None, help="name in the answer/judgment files (default: dir name)"
    )
    parser.add_argument("--question-file", default=MT_BENCH_QUESTIONS, help="path or URL")
    parser.add_argument("--judge-prompts", default=MT_BENCH_JUDGE_PROMPTS, help="path or URL")
    parser.add_argument("--reference-answers", default=MT_BENCH_REFERENCE_ANSWERS, help="path or URL")
    parser.add_argument("--question-ids", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--max-questions", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--conv-template", default=None, help="FastChat conversation template name")
    add_judge_arguments(parser, default_model="gpt-4")
    args = parser.parse_args(argv)
    spec = MTBenchSpec(
        judge=judge_from_arguments(args, JUDGE_MAX_TOKENS),
        output_dir=str(args.output_dir),
        model_id=args.model_id,
        question_file=args.question_file,
        judge_prompts=args.judge_prompts,
        reference_answers=args.reference_answers,
        question_ids=tuple(int(i) for i in args.question_ids.split(",") if i.strip()),
        max_questions=args.max_questions,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        conv_template=args.conv_template,
    )
    fitness = evaluate(args.model, spec)
    print_fitness("MT-Bench score", fitness, args.output_dir)
    print(
        f"unparseable ratings: {fitness.details['n_unparseable']}, judge errors: {fitness.details['n_errors']}, "
        f"new judge calls: {fitness.details['judge_calls']}"
    )


if __name__ == "__main__":
    main()
