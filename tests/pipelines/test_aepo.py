"""AEPO's data step: input parsing, annotation of the selected responses only, West-of-N and ranked
outputs, the rewards (verifiable, reward model, judge) and the command line."""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from evaluators.judge import JudgeConfig, parse_rating
from evaluators.verifiable_prompts import make_prompt
from tests.builders import read_jsonl, user, write_jsonl
from trainer.data import DataFormatError, load_preference_dataset
from trainer.models import load_tokenizer
from trainer.pipelines import aepo
from trainer.pipelines.aepo import AepoConfig, main, parse_example, run_aepo
from trainer.pipelines.rewards import ResponseToScore, judge_reward, model_reward, verifiable_reward

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

RESPONSES = [
    "the owl hunts at night and sleeps by day.",
    "owls hunt mice at night.",
    "An owl is a bird.",
    "OWLS ARE BIRDS OF PREY.",
    "owls can turn their heads far around.",
]
SCORES = {
    text: float(i)
    for i, text in enumerate([RESPONSES[2], RESPONSES[0], RESPONSES[3], RESPONSES[4], RESPONSES[1]])
}


class CountingReward:
    """A reward by lookup that records every response it was asked about."""

    def __init__(self, scores):
        self.scores, self.seen = scores, []

    def __call__(self, candidates):
        self.seen.extend(c.response for c in candidates)
        return [self.scores[c.response] for c in candidates]


def test_west_of_n_keeps_the_best_and_the_worst_of_the_annotated_responses(tmp_path):
    source = write_jsonl(
        tmp_path / "in.jsonl", [{"prompt": "Tell me about owls.", "responses": RESPONSES, "id": "x"}]
    )
    reward = CountingReward(SCORES)
    config = AepoConfig(num_responses=5, num_annotations=3, west_of_n=True, diversity_penalty=0.5)
    result = run_aepo(source, tmp_path / "out.jsonl", config, reward)
    [row] = read_jsonl(tmp_path / "out.jsonl")
    assert len(row["selected"]) == 3 and len(reward.seen) == 3 == result.annotations  # only k are annotated
    annotated = sorted(reward.seen, key=SCORES.get)
    assert row["chosen"] == [{"role": "assistant", "content": annotated[-1]}]
    assert row["rejected"] == [{"role": "assistant", "content": annotated[0]}]
    assert (row["chosen_reward"], row["rejected_reward"]) == (SCORES[annotated[-1]], SCORES[annotated[0]])
    assert {RESPONSES[i] for i in row["selected"]} == set(reward.seen)
    assert row["prompt"] == user("Tell me about owls.") and row["id"] == "x"
    load_preference_dataset(tmp_path / "out.jsonl")  # trainable as it is


def test_all_responses_annotated_gives_the_global_best_and_worst(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Owls?", "responses": RESPONSES}])
    run_aepo(source, tmp_path / "out.jsonl", AepoConfig(5, 5, west_of_n=True), CountingReward(SCORES))
    [row] = read_jsonl(tmp_path / "out.jsonl")
    assert row["chosen"][0]["content"] == RESPONSES[1] and row["rejected"][0]["content"] == RESPONSES[2]


def test_ranked_output_without_west_of_n(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Owls?", "responses": RESPONSES}])
    run_aepo(source, tmp_path / "out.jsonl", AepoConfig(5, 4, format="plain"), CountingReward(SCORES))
    [row] = read_jsonl(tmp_path / "out.jsonl")
    assert row["prompt"] == "Owls?" and "chosen" not in row
    assert (
        row["ranked_rewards"] == sorted(row["ranked_rewards"], reverse=True)
        and len(row["ranked_rewards"]) == 4
    )
    assert [SCORES[RESPONSES[i]] for i in row["ranked_indices"]] == row["ranked_rewards"]
    assert row["ranked_responses"] == [RESPONSES[i] for i in row["ranked_indices"]]


def test_the_prompt_is_never_a_response(tmp_path):
    # The prompt is central to the responses' meaning (MBR-attractive) and comes first, as in the published
    # code that took the first N columns: it must never be selected, annotated or written.
    prompt = "owls hunt at night"
    rows = [{"prompt": prompt} | {f"response_{i}": text for i, text in enumerate(RESPONSES)}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    reward = CountingReward(SCORES)
    run_aepo(source, tmp_path / "out.jsonl", AepoConfig(4, 2, diversity_penalty=0.0), reward)
    [row] = read_jsonl(tmp_path / "out.jsonl")
    assert prompt not in reward.seen and set(reward.seen) <= set(RESPONSES[:4])
    assert all(0 <= i < 4 for i in row["selected"])
    assert not any(key.startswith("response_") for key in row)
    with pytest.raises(DataFormatError, match="is also a response column"):
        parse_example(rows[0], 0, AepoConfig(4, 2, prompt_column="response_0"))


def test_too_few_responses_and_k_of_one_are_errors(capsys):
    with pytest.raises(DataFormatError, match="holds 5 responses, --num_responses is 6"):
        parse_example({"prompt": "p", "responses": RESPONSES}, 0, AepoConfig(6, 2))
    with pytest.raises(ValueError, match="num_annotations must be >= 2"):
        AepoConfig(num_responses=4, num_annotations=1)
    with pytest.raises(SystemExit):
        main(["unused.jsonl", "--num_responses", "4", "--num_annotations", "1", "--output", "o.jsonl"])
    assert "--num_annotations must be >= 2" in capsys.readouterr().err


def test_tied_rewards_drop_the_row(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Owls?", "responses": RESPONSES}])
    result = run_aepo(source, tmp_path / "out.jsonl", AepoConfig(5, 2), lambda cands: [1.0] * len(cands))
    assert (result.rows_written, result.dropped_ties) == (0, 1)


def test_cli_with_the_verifiable_reward(tmp_path):
    prompt = make_prompt("lowercase", "owl", 0)
    rows = [{"prompt": prompt.text, "id": prompt.id, "responses": RESPONSES}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    args = [
        str(source),
        "--num_responses",
        "5",
        "--num_annotations",
        "4",
        "--west_of_n",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    [row] = read_jsonl(out)
    assert row["chosen_reward"] == 1.0 and row["rejected_reward"] == 0.0
    assert row["chosen"][0]["content"].islower() and not row["rejected"][0]["content"].islower()


def test_verifiable_reward_checks_family_params_or_a_rebuilt_id():
    reward = verifiable_reward(seed=0)
    prompt = make_prompt("include_word", "owl", 0)
    word = prompt.params["word"]
    by_params = ResponseToScore(
        {"family": "include_word", "params": {"word": word}}, user("x"), f"a {word} here"
    )
    by_id = ResponseToScore({"id": prompt.id}, user(prompt.text), "nothing")
    assert reward([by_params, by_id]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="differs from the verifiable prompt"):
        reward([ResponseToScore({"id": prompt.id}, user("another prompt"), "x")])
    with pytest.raises(ValueError, match="needs 'family' and 'params'"):
        reward([ResponseToScore({}, user("x"), "x")])


def test_reward_model_scores_the_chat_rendered_conversation(tmp_path):
    tokenizer = load_tokenizer("tiny")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    candidates = [ResponseToScore({}, user("Owls?"), text) for text in RESPONSES[:3]]
    scores = model_reward(str(tmp_path / "rm"), batch_size=2)(candidates)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    for candidate, score in zip(candidates, scores, strict=True):
        text = tokenizer.apply_chat_template(
            user("Owls?") + [{"role": "assistant", "content": candidate.response}], tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            assert score == pytest.approx(
                model(**ids).logits[0, 0].item(), abs=1e-4
            )  # padding changes nothing
    assert len(set(scores)) == 3


def test_judge_reward_parses_ratings_and_marks_failures_nan():
    replies = iter(["Fine. Rating: [[8]]", "No rating here", "Rating: [[2.5]] then [[3]]"])
    seen = []

    def create(model, messages, temperature, max_tokens):
        seen.append(messages[-1]["content"])
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=next(replies)))])

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    judge = judge_reward(JudgeConfig(model="m", parallel=1), client=client)
    scores = judge([ResponseToScore({}, user("Owls?"), text) for text in RESPONSES[:3]])
    assert (
        scores[0] == 8.0 and math.isnan(scores[1]) and scores[2] == 2.5
    )  # FastChat's parser: the first rating
    assert "[Request]\nOwls?" in seen[0] and RESPONSES[0] in seen[0]
    assert math.isnan(parse_rating("")) and parse_rating("[[10]]") == 10.0


def test_unknown_reward_name_is_an_error(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="not 'verifiable', 'judge' or an existing reward-model folder"
    ):
        aepo.make_reward(str(tmp_path / "missing"), SimpleNamespace())
