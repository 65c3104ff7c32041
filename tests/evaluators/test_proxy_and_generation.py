"""Proxy fitness (log-probs, margins, drift) and batched generation, on the `tiny` preset."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evaluators import proxy
from evaluators.fitness import Fitness, mean_stderr, paired_delta
from trainer.chat import render
from trainer.generation import SamplingConfig, _generate_batch, _truncate_at_stop, chat, load_model
from trainer.logprobs import completion_logps, split_ids

PAIRS = [
    {
        "prompt": [{"role": "user", "content": "Name a fruit."}],
        "chosen": [{"role": "assistant", "content": "A banana."}],
        "rejected": [{"role": "assistant", "content": "I refuse to answer that question."}],
    },
    {
        "prompt": [{"role": "user", "content": "Say yes."}],
        "chosen": [{"role": "assistant", "content": "Yes."}],
        "rejected": [{"role": "assistant", "content": "No."}],
    },
]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def test_completion_logps_match_a_full_forward(tiny):
    model, tokenizer = tiny
    row = PAIRS[0]
    prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    assert full_text.startswith(prompt_ids)
    n_prompt = len(tokenizer(prompt_ids, add_special_tokens=False)["input_ids"])
    ids = torch.tensor([tokenizer(full_text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    expected = sum(logps[t - 1, ids[0, t]].item() for t in range(n_prompt, ids.shape[1]))
    prompts, chosen = [r["prompt"] for r in PAIRS], [r["chosen"] for r in PAIRS]
    got = completion_logps(model, tokenizer, prompts, chosen, batch_size=2, max_length=512)
    assert got[0] == pytest.approx(expected, rel=1e-4)
    alone = completion_logps(model, tokenizer, prompts[1:], chosen[1:], batch_size=1, max_length=512)
    assert got[1] == pytest.approx(alone[0], rel=1e-4)  # right padding does not leak


def test_plain_text_completions_get_eos(tiny):
    _, tokenizer = tiny
    prompt_ids, completion_ids = split_ids(tokenizer, "Q: hi\nA:", " hello")
    assert completion_ids[-1] == tokenizer.eos_token_id and prompt_ids


def test_proxy_fitness_arithmetic():
    policy = torch.tensor([[-1.0, -3.0], [-2.0, -1.0]])
    reference = torch.tensor([[-2.0, -2.0], [-2.0, -2.0]])
    fitness = proxy.proxy_fitness(policy, reference, beta=0.1)
    assert (fitness.score, fitness.n) == (0.5, 2)  # margins 0.1 * [2, -1]
    assert fitness.details["mean_reward_margin"] == pytest.approx(0.05)
    assert fitness.details["chosen_logp_drift"] == pytest.approx(0.5)
    assert fitness.details["rejected_logp_drift"] == pytest.approx(0.0)


def test_proxy_soft_accuracy_is_the_mean_sigmoid_of_the_margins():
    policy = torch.tensor([[-1.0, -3.0], [-2.0, -1.0]])
    reference = torch.tensor([[-2.0, -2.0], [-2.0, -2.0]])
    fitness = proxy.proxy_fitness(policy, reference, beta=0.1, metric="soft_accuracy")
    high, low = 1 / (1 + math.exp(-0.2)), 1 / (1 + math.exp(0.1))  # margins 0.2 and -0.1
    assert fitness.details["per_item"] == pytest.approx({"0": high, "1": low})
    assert fitness.score == pytest.approx((high + low) / 2)
    assert fitness.stderr == pytest.approx(abs(high - low) / 2)  # sample sd |a - b| / sqrt(2), over sqrt(2)
    with pytest.raises(ValueError, match="proxy metric 'margin'"):
        proxy.ProxySpec(data="x", metric="margin")


def test_proxy_cli_policy_equal_to_reference(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in PAIRS))
    proxy.main(["--model", "tiny", "--reference", "tiny", "--data", str(data), "--output-dir", str(tmp_path)])
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["score"], result["n"]) == (0.0, 2)  # identical models: zero margins, none positive
    assert result["details"]["mean_reward_margin"] == 0 and result["details"]["chosen_logp_drift"] == 0
    assert "proxy preference accuracy" in capsys.readouterr().out


def test_batched_greedy_generation_equals_one_by_one(tiny):
    model, tokenizer = tiny
    conversations = [
        [{"role": "user", "content": "Hi."}],
        [{"role": "user", "content": "Tell me a long story about a dragon and a castle, please."}],
        [{"role": "user", "content": "Two plus two?"}],
    ]
    config = SamplingConfig(max_new_tokens=6, batch_size=3)
    batched = chat(model, tokenizer, conversations, config)
    single = [
        chat(model, tokenizer, [c], SamplingConfig(max_new_tokens=6, batch_size=1))[0] for c in conversations
    ]
    assert batched == single  # left padding and the attention mask do not change greedy outputs
    sampled = chat(
        model, tokenizer, conversations, SamplingConfig(max_new_tokens=6, temperature=1.0, num_samples=3)
    )
    assert [len(replies) for replies in sampled] == [3, 3, 3]


def test_fitness_statistics():
    assert mean_stderr([1.0, 2.0, 3.0]) == (2.0, pytest.approx(math.sqrt(1 / 3)))
    assert mean_stderr([4.0]) == (4.0, 0.0) and math.isnan(mean_stderr([])[0])
    a = Fitness(0.75, 0.2, 4, {"per_item": {"a": 1, "b": 1, "c": 1, "d": 0}})
    b = Fitness(0.25, 0.2, 4, {"per_item": {"a": 0, "b": 1, "c": 0, "d": 0, "e": 1}})
    delta = paired_delta(a, b)
    assert (delta.delta, delta.n) == (0.5, 4)
    assert delta.stderr == pytest.approx(mean_stderr([1, 0, 1, 0])[1])
    with pytest.raises(ValueError):
        paired_delta(a, Fitness(0.0, 0.0, 0))


def test_fastchat_conversation_template(tiny):
    _, tokenizer = tiny
    messages = [{"role": "user", "content": "Hi there."}]
    prompt = render(tokenizer, messages, "vicuna_v1.1")
    assert prompt.endswith("USER: Hi there. ASSISTANT:")
    assert render(tokenizer, messages).endswith(
        "<|im_start|>user\nHi there.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert _truncate_at_stop("An answer. ### Human: next turn", "one_shot") == "An answer."


def test_shared_prompt_cache_gives_the_same_continuations(tiny):
    model, tokenizer = tiny
    tokenizer.padding_side = "left"
    texts = [
        render(tokenizer, [{"role": "user", "content": c}]) for c in ("Hi.", "A much longer question here?")
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    options = dict(
        max_new_tokens=6,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id],
    )
    with torch.inference_mode():
        shared = _generate_batch(model, inputs["input_ids"], inputs["attention_mask"], 3, options)
        repeated = model.generate(
            input_ids=inputs["input_ids"].repeat_interleave(3, 0),
            attention_mask=inputs["attention_mask"].repeat_interleave(3, 0),
            **options,
        )
    assert torch.equal(shared, repeated)
