"""The grammar-constrained LLM: llama.cpp's own grammar engine takes the GBNF grammar, the archive's losses as
``sentence`` prints them are sentences of it, it refuses code the sandbox's gradient tests would refuse, the
request carries the constraint of ``llm.constrain_mode``, and the embedded server's constrained replies parse
and pass the sandbox."""

import json
from dataclasses import replace

import pytest

from evo.archive import Archive
from evo.config import LLMConfig, ProposerConfig
from evo.llama_server import LlamaServer, embedded_server_config
from evo.proposers.base import Proposal
from evo.proposers.grammar import JSON_SCHEMA, loss_grammar, sentence
from evo.proposers.llm import LLMProposer
from evo.proposers.loss_expr import HEADER, Untranslatable, from_canonical, to_code
from evo.proposers.parsing import parse_reply
from evo.status import Status
from sandbox.validate import validate_source
from tests.evo.fake_llm import FakeLLM
from tests.evo.grammar_engine import GrammarEngine
from trainer.losses.registry import get_loss_spec

# Baselines whose canonical form the grammar's language can say (the others use other inputs than the margin,
# products of tensors, powers or masks: the symbolic proposer's ground).
SAYABLE = ("sigmoid", "hinge", "cell", "robust")
GOOD = json.dumps(
    {"thought": "plain DPO.", "name": "plain_dpo", "code": HEADER + "    return F.softplus(-z)\n"}
)


@pytest.fixture(scope="module")
def engine():
    started = GrammarEngine()
    yield started
    started.close()


def _reply(*body_lines: str) -> str:
    code = HEADER + "".join(f"    {line}\n" for line in body_lines)
    return json.dumps({"thought": "a loss of the margin.", "name": "candidate", "code": code})


def _add_baseline(archive: Archive, pool, name: str) -> str:
    spec = get_loss_spec(name)
    verdict = validate_source(spec.source, entry=name, pool=pool)
    assert verdict.valid, verdict.error
    archive.add(
        0,
        "baseline",
        Status.TRAINING,
        name=name,
        loss=name,
        code=spec.source,
        fingerprint=verdict.fingerprint,
        canonical=verdict.canonical_form,
    )
    return verdict.canonical_form


def test_llama_cpp_parses_the_grammar(engine):
    assert engine.parses(loss_grammar())
    assert not engine.parses(loss_grammar().replace("body ::=", "body :="))


def test_baselines_print_as_sentences_that_pass_the_sandbox(tmp_path, engine, sandbox_pool):
    for name in SAYABLE:
        canonical = _add_baseline(Archive(tmp_path / f"{name}.sqlite"), sandbox_pool, name)
        code = sentence(from_canonical(canonical))
        reply = json.dumps({"thought": f"the {name} baseline.", "name": name, "code": code})
        assert engine.accepts(loss_grammar(), reply), (name, code)
        verdict = validate_source(code, pool=sandbox_pool)
        assert verdict.valid, (name, verdict.error)
        if name in ("sigmoid", "hinge"):  # exact coefficients: the same loss, not an approximation
            assert verdict.canonical_form == canonical


def test_sentence_refuses_what_the_grammar_cannot_say():
    for outside in (
        "log(1 + exp(beta*margin))",  # rises with the margin
        "Piecewise((1, margin < 0), (0, True))*margin",
        "margin**2 - margin/beta + 1/(4*beta**2)",  # IPO: a power of the margin
        "log(1 + exp(-beta*margin))/(1 + exp(-20*beta*margin))",  # a product of tensors
        "log(1 + exp(-beta*margin)) + policy_rejected",
        "sqrt(margin**2 + 1)",
    ):
        with pytest.raises(Untranslatable):
            sentence(from_canonical(outside))
        assert to_code(from_canonical(outside))  # the sandbox's language is wider than the grammar's


@pytest.mark.parametrize(
    "body, accepted",
    [
        (["return -F.logsigmoid(z)"], True),
        (["return 0.5 * torch.exp(torch.clamp(-z, max=30.0)) + 0.5 * F.softplus(-logits / beta)"], True),
        (["w = F.softplus(-z)", "return 2 * w + torch.relu(1 - z)"], True),
        (["return F.softplus(z)"], False),  # rises with the margin: the sandbox's direction test fails it
        (["w = F.softplus(-z)", "return -w"], False),
        (["return torch.exp(-z)"], False),  # an unbounded exp overflows on large margins
        (["return torch.log(-z)"], False),
        (["return -z * z"], False),
        (["return F.softplus(-z) / logits"], False),
        (["import os", "return F.softplus(-z)"], False),
    ],
)
def test_the_grammar_admits_only_falling_finite_losses(engine, body, accepted):
    assert engine.accepts(loss_grammar(), _reply(*body)) is accepted


def test_the_envelope_is_strict(engine):
    assert engine.accepts(loss_grammar(), GOOD)
    assert not engine.accepts(loss_grammar(), "Here it is: " + GOOD)
    assert not engine.accepts(loss_grammar(), GOOD + "\n")
    assert not engine.accepts(loss_grammar(), GOOD.replace('"name"', '"title"'))


def test_constrain_mode_resolves_by_endpoint():
    assert LLMConfig().resolved_constrain_mode == "grammar"  # the embedded llama.cpp server
    assert LLMConfig(base_url="https://api.example.com/v1").resolved_constrain_mode == "none"
    assert (
        LLMConfig(base_url="http://x/v1", constrain_mode="json_schema").resolved_constrain_mode
        == "json_schema"
    )
    with pytest.raises(ValueError, match="constrain_mode"):
        LLMConfig(constrain_mode="regex")


@pytest.mark.parametrize("mode", ["grammar", "json_schema", "none"])
def test_the_request_carries_the_constraint(tmp_path, sandbox_pool, mode):
    archive = Archive(tmp_path / "a.sqlite")
    _add_baseline(archive, sandbox_pool, "hinge")
    _add_baseline(archive, sandbox_pool, "ipo_sum")  # the grammar cannot say it: not an example
    config = LLMConfig(base_url="http://unused/v1", model="fake", constrain_mode=mode, few_shot=2)
    with FakeLLM([{"reply": GOOD}]) as server:
        result = LLMProposer(config, ProposerConfig(), server.base_url).propose(archive, 1)
    assert isinstance(result, Proposal) and result.name == "plain_dpo"
    body = server.bodies[0]
    assert ("grammar" in body) is (mode == "grammar")
    assert ("response_format" in body) is (mode == "json_schema")
    if mode == "grammar":
        assert body["grammar"] == loss_grammar()
    if mode == "json_schema":
        assert body["response_format"]["json_schema"]["schema"] == JSON_SCHEMA
    system, example_request, example_reply, context = body["messages"]  # one example: hinge
    assert [m["role"] for m in (system, example_request, example_reply, context)] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    shown = parse_reply(example_reply["content"])
    assert isinstance(shown, Proposal) and shown.name == "hinge" and "torch.relu(1 - z)" in shown.code


def test_embedded_server_takes_the_grammar_and_its_replies_pass_the_sandbox(tmp_path, sandbox_pool):
    archive = Archive(tmp_path / "a.sqlite")
    for name in ("sigmoid", "hinge"):
        _add_baseline(archive, sandbox_pool, name)
    with LlamaServer(embedded_server_config(log_path=tmp_path / "llama.log")) as server:
        config = replace(LLMConfig(), model=server.model, max_tries=1)  # base_url None: auto is the grammar
        proposer = LLMProposer(config, ProposerConfig(), server.base_url, seed=3)
        results = [proposer.propose(archive, 1) for _ in range(6)]
    assert all(isinstance(r, Proposal) for r in results), [getattr(r, "reason", "") for r in results]
    verdicts = [validate_source(r.code, pool=sandbox_pool) for r in results]
    assert sum(v.valid for v in verdicts) >= 4, [
        (r.code, v.error) for r, v in zip(results, verdicts, strict=True)
    ]
