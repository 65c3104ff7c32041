"""Parsing of LLM replies and the LLM proposer's retries against a scripted loopback server."""

import json

import pytest

from evo.archive import Archive
from evo.config import LLMConfig, ProposerConfig
from evo.proposers.base import Proposal, Unparseable
from evo.proposers.llm import LLMProposer
from evo.proposers.parsing import parse_reply
from tests.evo.fake_llm import FakeLLM

GOOD_CODE = "def loss_fn(pc, pr, rc, rr, beta):\n    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))\n"
GOOD = json.dumps({"thought": "plain dpo", "name": "Plain DPO", "code": GOOD_CODE})


@pytest.mark.parametrize(
    ("reply", "kind", "detail"),
    [
        (GOOD, Proposal, "plain_dpo"),
        ("Sure! " + GOOD + " Hope that helps.", Proposal, "plain_dpo"),
        ("```json\n" + GOOD + "\n```", Proposal, "plain_dpo"),
        (
            '{"thought": "t", "name": "raw newlines", "code": "def loss_fn(a, b, c, d, beta):\n    return a"}',
            Proposal,
            "raw_newlines",
        ),
        ("Here it is:\n```python\n" + GOOD_CODE + "```", Proposal, "candidate"),
        ('{"thought": "x", "name": "cut", "code": "def loss_fn(pc, pr', Unparseable, "truncated"),
        ("I cannot help with that.", Unparseable, "no JSON object"),
        ("", Unparseable, "empty"),
        ('{"thought": "no code here", "name": "n"}', Unparseable, "no JSON object"),
    ],
)
def test_parse_reply(reply, kind, detail):
    result = parse_reply(reply)
    assert isinstance(result, kind)
    if kind is Proposal:
        assert result.name == detail and "def loss_fn" in result.code
    else:
        assert detail in result.reason


def _proposer(base_url: str, **overrides) -> LLMProposer:
    settings = dict(
        base_url=base_url,
        model="fake",
        timeout_s=1.0,
        max_tries=4,
        price_per_1k_input=0.01,
        price_per_1k_output=0.03,
    )
    config = LLMConfig(**{**settings, **overrides})
    return LLMProposer(config, ProposerConfig(), base_url)


def test_retries_through_errors_timeouts_and_bad_bodies(tmp_path):
    script = [{"status": 500}, {"delay": 2.5, "reply": GOOD}, {"truncated": True}, {"reply": GOOD}]
    with FakeLLM(script) as server:
        result = _proposer(server.base_url).propose(Archive(tmp_path / "a.sqlite"), 1)
    assert isinstance(result, Proposal) and result.name == "plain_dpo"
    assert len(result.usage.faults) == 3
    assert "InternalServerError" in result.usage.faults[0] and "Timeout" in result.usage.faults[1]
    assert result.usage.tokens_in == 100 and result.usage.cost_usd == pytest.approx(0.001 + 0.0015)


def test_gives_up_after_the_bounded_tries(tmp_path):
    with FakeLLM([], default={"status": 429}) as server:
        result = _proposer(server.base_url, max_tries=2).propose(Archive(tmp_path / "a.sqlite"), 1)
    assert isinstance(result, Unparseable) and "gave up after 2 tries" in result.reason
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(tmp_path):
    with FakeLLM([], default={"status": 400}) as server:
        result = _proposer(server.base_url).propose(Archive(tmp_path / "a.sqlite"), 1)
    assert isinstance(result, Unparseable) and "400" in result.reason
    assert len(server.requests) == 1


def test_prompt_carries_the_archive_context(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    done = archive.add(0, "baseline", "done", name="dpo", code=GOOD_CODE, fitness=0.61, stderr=0.03)
    archive.add(1, "llm", "invalid", name="broken", reason="[policy] line 2: import of os is not allowed")
    with FakeLLM([{"reply": GOOD}]) as server:
        _proposer(server.base_url).propose(archive, 2)
        system, user = server.requests[0]
    assert "def loss_fn" in system["content"] and '"code"' in system["content"]
    for term in ("def token_loss_fn", "chosen_lengths", "reference-free", "chosen_kl", "chosen_mask"):
        assert term in system["content"]  # both contracts, their optional inputs and the reference-free rule
    assert "dpo (fitness 0.6100 +- 0.0300)" in user["content"]
    assert "import of os is not allowed" in user["content"]
    assert done == 1


def test_repair_sends_the_error_back(tmp_path):
    with FakeLLM([{"reply": GOOD}]) as server:
        broken = Proposal("broken", "def loss_fn(pc, pr, rc, rr, beta):\n    import os\n")
        fixed = _proposer(server.base_url).repair(broken, "[policy] line 2: import of os is not allowed")
        prompt = server.requests[0][1]["content"]
    assert isinstance(fixed, Proposal) and "logsigmoid" in fixed.code
    assert "import of os is not allowed" in prompt and "import os" in prompt
