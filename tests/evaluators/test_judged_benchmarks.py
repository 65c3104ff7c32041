"""MT-Bench and AlpacaEval end to end against a real judge: llama.cpp serving the embedded GGUF on loopback.

The answering model is the `tiny` preset with a few new tokens, so the time goes to the judge. A proxy in front of
the judge counts the calls, which pins the resume (a second run makes none).
"""

from __future__ import annotations

import json
import math
import re

import huggingface_hub.constants
import pytest

from evaluators import alpaca_eval as alpaca_eval_evaluator
from evaluators import mt_bench
from evaluators.judge import ERROR_OUTPUT

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

SECRET = "sk-test-not-to-be-written-anywhere"


def _judge_args(judge) -> list[str]:
    return [
        "--judge-base-url",
        judge.base_url,
        "--judge-model",
        judge.model,
        "--judge-api-key-env",
        "EVOPO_TEST_KEY",
        "--judge-parallel",
        "2",
    ]


def test_mt_bench_with_llama_judge(tmp_path, shared_data, llama_judge, monkeypatch, capsys):
    monkeypatch.setenv("EVOPO_TEST_KEY", SECRET)
    data = shared_data / "mt_bench"
    argv = [
        "--model",
        "tiny",
        "--output-dir",
        str(tmp_path),
        "--question-file",
        str(data / "question.jsonl"),
        "--judge-prompts",
        str(data / "judge_prompts.jsonl"),
        "--reference-answers",
        str(data / "reference_answer" / "gpt-4.jsonl"),
        "--question-ids",
        "81,111",
        "--max-new-tokens",
        "8",
        "--judge-max-tokens",
        "24",
        *_judge_args(llama_judge),
    ]
    before = llama_judge.calls
    mt_bench.main(argv)
    assert llama_judge.calls - before == 4  # 2 questions x 2 turns

    answers = [
        json.loads(line) for line in (tmp_path / "model_answer" / "tiny.jsonl").read_text().splitlines()
    ]
    assert [a["question_id"] for a in answers] == [81, 111]
    assert all(len(a["choices"][0]["turns"]) == 2 and a["model_id"] == "tiny" for a in answers)
    judgment_path = mt_bench.judgment_file(tmp_path, llama_judge.model)
    assert judgment_path.name == "smollm2-135m-instruct_single.jsonl"
    rows = [json.loads(line) for line in judgment_path.read_text().splitlines()]
    assert sorted((r["question_id"], r["turn"], r["judge"][1]) for r in rows) == [
        (81, 1, "single-v1"),
        (81, 2, "single-v1-multi-turn"),
        (111, 1, "single-math-v1"),
        (111, 2, "single-math-v1-multi-turn"),
    ]
    assert all(r["judgment"] != ERROR_OUTPUT for r in rows)

    result = json.loads((tmp_path / "result.json").read_text())
    unparseable = [
        r
        for r in rows
        if not (
            re.search(r"\[\[(\d+\.?\d*)\]\]", r["judgment"]) or re.search(r"\[(\d+\.?\d*)\]", r["judgment"])
        )
    ]
    assert result["details"]["n_unparseable"] == len(unparseable)
    assert result["n"] == 4 - len(unparseable)
    rated = [r["score"] for r in rows if r["score"] != -1]
    if rated:
        assert result["score"] == pytest.approx(sum(rated) / len(rated))
    else:
        assert math.isnan(result["score"])
    out = capsys.readouterr().out
    assert "MT-Bench score" in out and f"unparseable ratings: {len(unparseable)}" in out

    mt_bench.main(argv)  # resume: answers and judgments are reused
    assert llama_judge.calls - before == 4
    assert json.loads((tmp_path / "result.json").read_text())["details"]["judge_calls"] == 0
    assert SECRET not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())


def test_alpaca_eval_with_llama_judge(tmp_path, shared_data, llama_judge, monkeypatch, capsys, df_gamed):
    monkeypatch.setenv("EVOPO_TEST_KEY", SECRET)
    # The LC fit reads df_gamed.csv from --lc-gamed-file (a synthetic one here); nothing may reach for the Hub.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    argv = [
        "--model",
        "tiny",
        "--output-dir",
        str(tmp_path),
        "--max-new-tokens",
        "8",
        "--max-instances",
        "5",
        "--reference-outputs",
        str(shared_data / "alpaca_eval" / "gpt4_1106_preview_outputs.json"),
        "--lc-gamed-file",
        str(df_gamed),
        *_judge_args(llama_judge),
    ]
    before = llama_judge.calls
    alpaca_eval_evaluator.main(argv)
    assert llama_judge.calls - before == 5

    outputs = json.loads((tmp_path / "model_outputs.json").read_text())
    assert len(outputs) == 5 and {o["generator"] for o in outputs} == {"tiny"}
    annotations = json.loads((tmp_path / "annotations.json").read_text())
    assert len(annotations) == 5
    assert {a["instruction"] for a in annotations} == {o["instruction"] for o in outputs}
    config = (tmp_path / "annotator" / "evopo_judge" / "configs.yaml").read_text()
    assert "smollm2-135m-instruct" in config and "logprob_parser" in config

    result = json.loads((tmp_path / "result.json").read_text())
    details = result["details"]
    missing = sum(a["preference"] is None for a in annotations)
    assert details["n_unparseable"] == missing and result["n"] == 5 - missing
    assert 0 <= details["win_rate"] <= 100
    if math.isnan(result["score"]):
        assert details["lc_error"]  # the LC fit on 5 instances may fail; it must say so
        assert "length-controlled win rate unavailable" in capsys.readouterr().out
    else:
        assert 0 <= result["score"] <= 100

    alpaca_eval_evaluator.main(argv)  # resume: outputs and annotations come from disk
    assert llama_judge.calls - before == 5
    assert json.loads((tmp_path / "result.json").read_text())["details"]["win_rate"] == pytest.approx(
        details["win_rate"]
    )
    assert SECRET not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
