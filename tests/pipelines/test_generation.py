"""Sampling K responses per prompt: shape, reproducibility, backend choice."""

import importlib.util
from dataclasses import replace

import pytest

from tests.pipelines.helpers import user
from trainer.generation import SamplingConfig, choose_backend, sample_responses

PROMPTS = [user("A much longer prompt about rivers, lakes, seas and the weather over them."), user("Hi")]


def test_k_samples_per_prompt_reproducible_by_seed():
    options = SamplingConfig(num_samples=3, temperature=1.0, max_new_tokens=6, seed=1, backend="hf")
    first = sample_responses("tiny", PROMPTS, options)
    assert [len(rows) for rows in first] == [3, 3] and all(isinstance(t, str) for rows in first for t in rows)
    assert sample_responses("tiny", PROMPTS, options) == first
    other_seed = replace(options, seed=2)
    assert sample_responses("tiny", PROMPTS, other_seed) != first


def test_backend_choice():
    if importlib.util.find_spec("vllm") is None:
        assert choose_backend("auto") == "hf"
    assert choose_backend("hf") == "hf"
    with pytest.raises(ValueError, match="unknown generation backend"):
        SamplingConfig(backend="tgi")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        SamplingConfig(num_samples=0)
