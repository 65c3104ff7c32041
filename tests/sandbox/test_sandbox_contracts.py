"""The two contracts the LLM may write to, validated in the sandbox: the sequence contract with the optional
completion lengths and no reference (a SimPO-like candidate), and the token contract (``token_loss_fn``, a per-token
DPO and a TDPO-like loss), with the gradient tests, the fingerprint and the canonical form covering both."""

from __future__ import annotations

import pytest

from sandbox.contract import LENGTH_ROLES, REFERENCE_ROLES
from sandbox.graph_decode import decode_graph
from sandbox.validate import entry_of, validate_source
from tests.sandbox.contract_sources import (
    SIMPO_LIKE,
    SUMMED,
    TOKEN_DPO,
    TOKEN_LENGTH_BRANCH,
    TOKEN_PADDING_DEPENDENT,
    TOKEN_TDPO,
    TOKEN_WRONG_WAY,
)


def test_a_simpo_like_candidate_with_lengths_and_no_reference_validates(sandbox_pool):
    result = validate_source(SIMPO_LIKE, pool=sandbox_pool)
    assert result.valid, f"[{result.stage}] {result.error}"
    graph = decode_graph(result.graph)
    assert graph.contract == "sequence" and set(LENGTH_ROLES) <= set(graph.inputs)
    assert not graph.reads & set(REFERENCE_ROLES)  # reference-free: training runs no reference model
    assert "chosen_lengths" in result.canonical_form and "margin" not in result.canonical_form


def test_the_fingerprint_tells_a_length_normalised_loss_from_its_unnormalised_form(sandbox_pool):
    normalised = validate_source(SIMPO_LIKE, pool=sandbox_pool)
    summed = validate_source(SUMMED, pool=sandbox_pool)
    assert normalised.valid and summed.valid and None not in (normalised.fingerprint, summed.fingerprint)
    assert normalised.fingerprint != summed.fingerprint
    again = validate_source(
        SIMPO_LIKE.replace("pc, pr, rc, rr", "a, b, c, d").replace("pc /", "a /").replace("pr /", "b /"),
        pool=sandbox_pool,
    )
    assert again.fingerprint == normalised.fingerprint  # the same function, however it is written


@pytest.mark.parametrize("source", [TOKEN_DPO, TOKEN_TDPO], ids=["token-dpo", "token-tdpo"])
def test_a_token_level_candidate_validates_against_the_token_contract(sandbox_pool, source):
    assert entry_of(source) == "token_loss_fn"
    result = validate_source(source, pool=sandbox_pool)
    assert result.valid, f"[{result.stage}] {result.error}"
    assert result.graph["contract"] == "token" and result.fingerprint is not None
    assert result.canonical_form is None  # documented: no closed form over the margin for per-token sums


def test_token_level_fingerprints_tell_losses_apart(sandbox_pool):
    keys = {validate_source(s, pool=sandbox_pool).fingerprint for s in (TOKEN_DPO, TOKEN_TDPO)}
    assert len(keys) == 2 and None not in keys


def test_a_token_level_loss_that_trains_the_wrong_way_is_rejected(sandbox_pool):
    result = validate_source(TOKEN_WRONG_WAY, pool=sandbox_pool)
    assert not result.valid and result.stage == "gradient_tests"
    assert "direction[" in result.error and "policy_chosen_token_logps" in result.error


def test_a_token_level_loss_that_reads_the_padding_is_rejected(sandbox_pool):
    result = validate_source(TOKEN_PADDING_DEPENDENT, pool=sandbox_pool)
    assert not result.valid and result.stage == "gradient_tests"
    assert result.error.startswith("padding[random-float64]")


def test_a_token_level_loss_may_not_branch_on_the_sequence_length(sandbox_pool):
    result = validate_source(TOKEN_LENGTH_BRANCH, pool=sandbox_pool)
    assert not result.valid and result.stage == "trace" and "[sequence-length]" in result.error
