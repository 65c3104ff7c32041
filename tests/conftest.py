"""Fixtures every test folder shares: the tiny model, small preference files in each supported format, one warm
sandbox pool, recipe files. Plain helpers live in ``tests/builders.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.builders import granular_rows, preference_rows, spin_rows, write_jsonl, write_recipe
from trainer.models import load_tokenizer, tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_path() -> str:
    """The tiny model's checkpoint (built once, offline)."""
    return str(tiny_checkpoint())


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return load_tokenizer("tiny")


@pytest.fixture
def preference_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", preference_rows())


@pytest.fixture
def spin_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "spin.jsonl", spin_rows())


@pytest.fixture
def granular_file(tmp_path) -> Path:
    path = tmp_path / "granular.json"
    path.write_text(json.dumps(granular_rows()))
    return path


@pytest.fixture(scope="session")
def sandbox_pool():
    """One warm sandbox pool for the tests that validate or trace losses (as the search's driver does)."""
    from sandbox.executor import SandboxPool

    with SandboxPool() as pool:
        yield pool


@pytest.fixture
def recipe(tmp_path):
    return lambda **fields: write_recipe(tmp_path / "recipe.yaml", **fields)
