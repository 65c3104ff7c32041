"""The evaluators generate through trainer.generation: their specs' `backend` and `dtype` reach it."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import trainer.generation
from evaluators import verifiable
from evaluators.alpaca_eval import AlpacaEvalSpec, model_outputs
from evaluators.mt_bench_answers import generate_answers
from evaluators.verifiable import VerifiableSpec

FAMILIES = ("max_words", "end_question")


@pytest.fixture
def without_vllm(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )


def test_each_generating_evaluator_with_vllm_but_without_the_package_says_how_to_install(
    tmp_path, without_vllm
):
    question = {"question_id": 1, "category": "writing", "turns": ["Hi", "More"]}
    with pytest.raises(RuntimeError, match="vllm"):
        verifiable.evaluate("tiny", VerifiableSpec(families=FAMILIES, n_heldout_topics=1, backend="vllm"))
    with pytest.raises(RuntimeError, match="vllm"):
        generate_answers("tiny", "tiny", [question], tmp_path / "answers.jsonl", 4, 2, backend="vllm")
    with pytest.raises(RuntimeError, match="vllm"):
        model_outputs(
            "tiny", "tiny", [{"instruction": "Hi"}], tmp_path / "out.json", AlpacaEvalSpec(backend="vllm")
        )
    assert not (tmp_path / "answers.jsonl").exists() and not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("dtype", "expected"), [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_the_verifiable_spec_dtype_is_the_generation_weights_dtype(monkeypatch, dtype, expected):
    loaded = []
    real = trainer.generation.load_model

    def spy(model, dtype="auto"):
        policy, tokenizer = real(model, dtype)
        loaded.append(policy.dtype)
        return policy, tokenizer

    monkeypatch.setattr(trainer.generation, "load_model", spy)
    spec = VerifiableSpec(families=FAMILIES, n_heldout_topics=1, max_new_tokens=4, backend="hf", dtype=dtype)
    fitness = verifiable.evaluate("tiny", spec)
    assert fitness.n == 2 and loaded == [expected]
