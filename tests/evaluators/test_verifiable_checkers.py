"""Every verifiable family: its instruction states the constraint, and its checker passes and fails as it should."""

import pytest

from evaluators.verifiable_families import DEFAULT_FAMILIES, FAMILIES, check
from evaluators.verifiable_prompts import HELDOUT_TOPICS, TRAIN_TOPICS, make_prompt, make_prompts, topics

# family -> (params, passing responses, failing responses)
CASES = {
    "lowercase": (
        {},
        ["all lower case here.", "coffee is great, 100%"],
        ["Capital start.", "no CAPS allowed", "123"],
    ),
    "uppercase": ({}, ["ALL CAPS HERE!", "COFFEE: 100% GOOD"], ["ALL CAPS except this", "...", "Mixed Case"]),
    "max_words": (
        {"limit": 5},
        ["One two three four five.", "Short."],
        ["one two three four five six", "", "   "],
    ),
    "include_word": (
        {"word": "banana"},
        ["I like a Banana.", "banana"],
        ["bananas are plural", "no fruit here"],
    ),
    "exclude_word": (
        {"word": "coffee"},
        ["A dark roasted drink.", "Tea is nice."],
        ["Coffee is hot.", "I drink coffees daily", ""],
    ),
    "start_phrase": (
        {"phrase": "Sure thing:"},
        ["Sure thing: here.", "  Sure thing: x"],
        ["sure thing: lower", "Well, Sure thing:"],
    ),
    "end_phrase": (
        {"phrase": "That is all."},
        ["Coffee is hot. That is all.", "That is all.  \n"],
        ["That is all. More text", "that is all."],
    ),
    "json_key": (
        {"key": "topic"},
        ['{"topic": "coffee"}', '```json\n{"topic": 1, "x": 2}\n```'],
        ['{"subject": "coffee"}', '["topic"]', 'Here: {"topic": "coffee"}', "{topic: coffee}"],
    ),
    "arithmetic": (
        {"answer": 42},
        ["42", "The answer is 42.", "42 pages"],
        ["41", "40 + 2 = 42", "forty-two"],
    ),
    "bullets": (
        {"count": 3},
        ["- a\n- b\n- c", "Intro:\n* one\n* two\n• three\nDone."],
        ["- a\n- b", "- a\n- b\n- c\n- d", "1. a\n2. b\n3. c"],
    ),
    "no_commas": ({}, ["No commas at all.", "Hello there"], ["One, two.", ""]),
    "quotation": ({}, ['"Quoted answer."', "“Curly quotes”"], ['"Open only', "Not quoted", '"']),
    "title": ({}, ["<<Coffee Time>>\nText.", "Text then <<a title>>"], ["<<>> text", "<Coffee>", "<< \n >>"]),
    "end_question": (
        {},
        ["Do you like coffee?", "Coffee is hot. Want some?  "],
        ["Is it? Yes.", "No question."],
    ),
    "postscript": (
        {},
        ["Body text.\nP.S. One more thing."],
        ["P.S. at the very start", "Body text. PS no dots"],
    ),
}


def test_every_family_has_cases_and_defaults_are_known():
    assert set(CASES) == set(FAMILIES)
    assert len(FAMILIES) >= 10
    assert set(DEFAULT_FAMILIES) <= set(FAMILIES) and len(DEFAULT_FAMILIES) >= 10


@pytest.mark.parametrize("family", sorted(CASES))
def test_checker_passes_and_fails(family):
    params, passing, failing = CASES[family]
    for response in passing:
        assert check(family, response, params), f"{family} should pass {response!r}"
    for response in failing:
        assert not check(family, response, params), f"{family} should fail {response!r}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_instruction_mentions_topic_and_parameters(family):
    prompt = make_prompt(family, "coffee", seed=3)
    assert "coffee" in prompt.text
    for value in prompt.params.values():
        if isinstance(value, str):
            assert value in prompt.text
    assert prompt.id == f"{family}/coffee"


def test_arithmetic_answer_matches_the_question():
    for topic in TRAIN_TOPICS[:20]:
        prompt = make_prompt("arithmetic", topic, seed=0)
        a, b = (int(tok) for tok in prompt.text.split() if tok.isdigit())
        assert prompt.params["answer"] in (a + b, a - b, a * b, b * a, b + a)
        assert prompt.check(str(prompt.params["answer"]))


def test_prompts_are_deterministic_and_independent_of_the_other_families():
    alone = make_prompt("max_words", "owl", seed=7)
    together = {p.id: p for p in make_prompts(FAMILIES, ["owl", "comet"], seed=7)}
    assert together["max_words/owl"] == alone
    seeds = {
        make_prompt("include_word", topic, seed=s).params["word"] for topic in TRAIN_TOPICS for s in range(3)
    }
    assert len(seeds) > 1  # parameters vary across prompts


def test_heldout_topics_never_appear_in_training():
    assert not set(TRAIN_TOPICS) & set(HELDOUT_TOPICS)
    for (
        train
    ) in TRAIN_TOPICS:  # no topic is a prefix of another one, which the exclude_word checker relies on
        assert not any(h.startswith(train) or train.startswith(h) for h in HELDOUT_TOPICS)
    assert topics("heldout", 5) == HELDOUT_TOPICS[:5]
    with pytest.raises(ValueError):
        topics("train", len(TRAIN_TOPICS) + 1)


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="unknown verifiable families"):
        make_prompts(["lowercase", "nope"], ["owl"], seed=0)
