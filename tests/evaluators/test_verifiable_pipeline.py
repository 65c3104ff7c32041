"""The verifiable task end to end on the `tiny` preset: pairing, caching, held-out scoring, CLI, registry."""

from __future__ import annotations

import json
import random

import pytest

import evaluators
from evaluators import verifiable
from evaluators.fitness import Fitness, paired_delta
from evaluators.verifiable import VerifiableSpec, heldout_prompts, score_responses
from evaluators.verifiable_data import PairBuildConfig, build_pairs, west_of_n
from evaluators.verifiable_prompts import HELDOUT_TOPICS, TRAIN_TOPICS, make_prompt

FAMILIES = ("max_words", "include_word", "end_question")


def test_west_of_n_pairs_passing_with_failing():
    prompt = make_prompt("end_question", "coffee", seed=0)
    responses = ["Is it hot?", "It is hot.", "Is it hot?", "Hot.", "Really?"]
    labels = [prompt.check(r) for r in responses]
    pairs = west_of_n(prompt, responses, labels, count=10, rng=random.Random(0))
    # distinct passing {"Is it hot?", "Really?"} x distinct failing {"It is hot.", "Hot."}
    assert len(pairs) == 4
    for pair in pairs:
        assert pair["prompt"] == [{"role": "user", "content": prompt.text}]
        assert prompt.check(pair["chosen"][0]["content"]) and not prompt.check(pair["rejected"][0]["content"])
        assert pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
    assert len(west_of_n(prompt, responses, labels, count=1, rng=random.Random(0))) == 1
    assert west_of_n(prompt, ["Yes?", "No?"], [True, True], count=3, rng=random.Random(0)) == []


def test_score_responses_counts_per_prompt_and_family():
    prompts = heldout_prompts(VerifiableSpec(families=FAMILIES, n_heldout_topics=2))
    assert [p.topic for p in prompts] == [HELDOUT_TOPICS[0]] * 3 + [HELDOUT_TOPICS[1]] * 3
    responses = ["Short answer.", "nothing", "Why not?", "far too many words " * 10, "nothing", "No."]
    fitness = score_responses(prompts, responses)
    assert fitness.n == 6 and fitness.score == pytest.approx(2 / 6)
    assert fitness.stderr == pytest.approx((2 / 6 * 4 / 6 / 6) ** 0.5)
    assert fitness.details["per_item"] == {
        f"max_words/{HELDOUT_TOPICS[0]}": 1,
        f"include_word/{HELDOUT_TOPICS[0]}": 0,
        f"end_question/{HELDOUT_TOPICS[0]}": 1,
        f"max_words/{HELDOUT_TOPICS[1]}": 0,
        f"include_word/{HELDOUT_TOPICS[1]}": 0,
        f"end_question/{HELDOUT_TOPICS[1]}": 0,
    }
    assert fitness.details["per_family"] == {"max_words": 0.5, "include_word": 0.0, "end_question": 0.5}


def _scripted_chat(model, tokenizer, conversations, config, description=""):
    """Stands in for the policy: end_question prompts get a mix of passing and failing answers, the others
    all-failing ones (no pair)."""
    replies = []
    for conversation in conversations:
        mixed = "End your answer with a question." in conversation[-1]["content"]
        replies.append(
            ["Is it?", "It is.", "Why not?", "No."][: config.num_samples]
            if mixed
            else ["x"] * config.num_samples
        )
    return replies


def test_build_pairs_labels_pairs_and_caches(tmp_path, monkeypatch):
    monkeypatch.setattr("evaluators.verifiable_data.load_model", lambda name: (None, None))
    monkeypatch.setattr("evaluators.verifiable_data.chat", _scripted_chat)
    config = PairBuildConfig(
        model="tiny",
        families=FAMILIES,
        n_train_topics=4,
        n_proxy_topics=2,
        samples_per_prompt=4,
        pairs_per_prompt=3,
    )
    built = build_pairs(config, cache_dir=tmp_path)
    samples = [json.loads(line) for line in (built.directory / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 6
    for sample in samples:  # labels are the checkers' verdicts
        prompt = make_prompt(sample["family"], sample["topic"], config.seed)
        assert sample["passed"] == [prompt.check(r) for r in sample["responses"]]
    train = [json.loads(line) for line in built.train_path.read_text().splitlines()]
    proxy = [json.loads(line) for line in built.proxy_path.read_text().splitlines()]
    assert {row["id"] for row in train} == {f"end_question/{t}" for t in TRAIN_TOPICS[:4]}
    assert {row["id"] for row in proxy} == {f"end_question/{t}" for t in TRAIN_TOPICS[-2:]}
    assert len(train) == 4 * 3 and len(proxy) == 2 * 3  # 3 of the 2 x 2 (passing, failing) combinations each
    assert all(
        row["chosen"][0]["content"].endswith("?") and not row["rejected"][0]["content"].endswith("?")
        for row in train + proxy
    )
    assert built.stats["n_train_pairs"] == 12 and built.stats["mixed_prompts"]["end_question"] == 6
    assert built.stats["sample_pass_rate"] == {"max_words": 1.0, "include_word": 0.0, "end_question": 0.5}

    # Same config: read back from the cache without sampling; a different seed is a different build.
    monkeypatch.setattr("evaluators.verifiable_data.chat", lambda *a, **k: pytest.fail("sampled again"))
    again = build_pairs(config, cache_dir=tmp_path)
    assert again.directory == built.directory and again.stats == built.stats
    assert PairBuildConfig(model="tiny", seed=1).cache_key() != PairBuildConfig(model="tiny").cache_key()
    assert PairBuildConfig(model="tiny").cache_key().startswith("tiny-seed0-")


def test_evaluate_tiny_is_deterministic_and_paired(tmp_path):
    spec = VerifiableSpec(
        families=FAMILIES,
        n_heldout_topics=3,
        max_new_tokens=6,
        batch_size=4,
        generations_path=str(tmp_path / "gens.jsonl"),
    )
    first = evaluators.evaluate("tiny", spec)
    second = verifiable.evaluate("tiny", spec)
    assert first.n == 9 and set(first.details["per_item"]) == {p.id for p in heldout_prompts(spec)}
    assert first.score == sum(first.details["per_item"].values()) / 9
    assert first.details["per_item"] == second.details["per_item"]  # greedy
    assert paired_delta(first, second).delta == 0
    rows = [json.loads(line) for line in (tmp_path / "gens.jsonl").read_text().splitlines()]
    assert [int(r["passed"]) for r in rows] == [first.details["per_item"][r["id"]] for r in rows]


def test_cli_evaluates_and_builds_pairs(tmp_path, capsys):
    common = ["--model", "tiny", "--families", ",".join(FAMILIES), "--max-new-tokens", "4"]
    verifiable.main([*common, "--output-dir", str(tmp_path / "eval"), "--n-heldout-topics", "2"])
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert result["n"] == 6 and {"score", "stderr", "details"} <= set(result)
    assert "verifiable pass rate" in capsys.readouterr().out
    assert len((tmp_path / "eval" / "generations.jsonl").read_text().splitlines()) == 6

    verifiable.main(
        [
            *common,
            "--output-dir",
            str(tmp_path / "pairs"),
            "--build-pairs",
            "--n-train-topics",
            "2",
            "--n-proxy-topics",
            "1",
            "--samples-per-prompt",
            "2",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    meta = json.loads((tmp_path / "pairs" / "meta.json").read_text())
    assert meta["n_prompts"] == 9
    assert len((tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()) == meta["n_train_pairs"]
    with pytest.raises(SystemExit):
        verifiable.main(["--model", "tiny", "--output-dir", str(tmp_path), "--families", "nope"])


def test_registry_specs_and_dispatch():
    assert set(evaluators.EVALUATORS) == {"verifiable", "proxy", "mt_bench", "alpaca_eval", "alpaca_eval_lc"}
    spec = evaluators.make_spec("verifiable", families=["title", "bullets"], n_heldout_topics=5)
    assert spec == VerifiableSpec(families=("title", "bullets"), n_heldout_topics=5)
    mt = evaluators.make_spec("mt_bench", judge={"model": "judge", "base_url": "http://127.0.0.1:1/v1"})
    assert (mt.judge.model, mt.judge.max_tokens) == ("judge", 2048)
    lc = evaluators.make_spec("alpaca_eval_lc", max_instances=5)
    assert type(lc) is type(evaluators.make_spec("alpaca_eval")) and lc.max_instances == 5
    with pytest.raises(KeyError, match="unknown evaluator"):
        evaluators.get("nope")
    with pytest.raises(TypeError):
        evaluators.evaluate("tiny", object())
    assert Fitness.from_json(Fitness(0.5, 0.1, 4, {"a": 1}).to_json()) == Fitness(0.5, 0.1, 4, {"a": 1})
