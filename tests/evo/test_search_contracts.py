"""Issue 17's acceptance through the search, as a user runs it (``python -m evo.launch`` on the tiny preset, a
scripted LLM): a candidate that uses the completion lengths and no reference, and one in the token-level contract,
each validate in the sandbox and train the tiny model to ``done``, fed what their graphs ask for."""

from __future__ import annotations

import json

import pytest

from evo.archive import Archive
from evo.status import Status
from sandbox.graph_decode import decode_graph
from tests.builders import launch
from tests.evo.fake_llm import FakeLLM
from tests.sandbox.contract_sources import SIMPO_LIKE, TOKEN_TDPO
from trainer.losses.discovered import candidate_loss

pytestmark = pytest.mark.slow  # a search: minutes


def test_a_length_and_a_token_level_candidate_train_through_the_search_to_done(tmp_path, recipe):
    replies = [
        {
            "reply": json.dumps(
                {"thought": "length-normalised, no reference", "name": "simpo_like", "code": SIMPO_LIKE}
            )
        },
        {"reply": json.dumps({"thought": "per-token KL margin", "name": "token_tdpo", "code": TOKEN_TDPO})},
    ]
    run_dir = tmp_path / "run"
    with FakeLLM(replies) as server:
        config = recipe(
            preset="tiny",
            generations=1,
            population=2,
            baselines=[],
            proposers={"symbolic": False, "repair_rounds": 0},
            llm={"base_url": server.base_url, "model": "fake"},
        )
        result = launch(["--config", str(config), "--run-dir", str(run_dir)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    archive = Archive(run_dir / "archive.sqlite")
    by_name = {c.name: c for c in archive.all()}
    archive.close()
    assert set(by_name) == {"simpo_like", "token_tdpo"}
    for candidate in by_name.values():
        assert candidate.status == Status.DONE and candidate.fitness is not None, candidate.reason
        assert candidate.metrics["steps"] == 6 and candidate.fingerprint is not None
    simpo = candidate_loss("simpo_like", by_name["simpo_like"].graph, patience=20)
    assert simpo.needs_lengths and simpo.reference_free
    assert decode_graph(by_name["token_tdpo"].graph).contract == "token"
    assert candidate_loss("token_tdpo", by_name["token_tdpo"].graph, patience=20).needs_kl
