"""Rewards that annotate responses (AEPO's annotator): a callable from responses
(``ResponseToScore``) to one float each.

- ``verifiable``: 1.0 when the verifiable task's checker passes, else 0.0. A row names its checker either by
  ``family`` and ``params`` columns, or by an ``id`` of the form ``family/topic`` (the verifiable data
  builder's ids), whose prompt is rebuilt with ``--verifiable-seed`` and must have the row's prompt text.
- a model path: a sequence-classification reward model (one logit) scoring the chat-rendered conversation.
- ``judge``: an LLM judge behind any OpenAI-compatible endpoint (``evaluators.judge``), asked for a 1-10
  rating in MT-Bench's ``[[rating]]`` format and read by ``evaluators.judge.parse_rating``; a reply without a
  rating scores NaN (that response is left out of the pair).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from evaluators.judge import JudgeConfig, complete, parse_rating, run_parallel
from evaluators.verifiable_families import check
from evaluators.verifiable_prompts import make_prompt
from trainer.chat import Messages, assistant

JUDGE_SYSTEM = "You are a careful, impartial evaluator of AI assistant answers."
JUDGE_TEMPLATE = (
    "Rate the quality of the assistant's answer to the user's request below: consider helpfulness, "
    "relevance, accuracy, depth and whether it follows every instruction in the request. Give a brief "
    'justification, then the rating on a scale of 1 to 10 in exactly this format: "Rating: [[5]]".\n\n'
    "[Request]\n{question}\n\n[The Start of the Answer]\n{answer}\n[The End of the Answer]"
)


@dataclass(frozen=True)
class ResponseToScore:
    """One response to annotate, with the input row it came from (for row-level metadata such as checkers)."""

    row: Mapping[str, Any]
    prompt: Messages
    response: str


RewardFn = Callable[[Sequence[ResponseToScore]], list[float]]


def _verifiable_checker(row: Mapping[str, Any], prompt: Messages, seed: int) -> tuple[str, Mapping[str, Any]]:
    if "family" in row and "params" in row:
        return row["family"], row["params"]
    identifier = row.get("id")
    if not (isinstance(identifier, str) and identifier.count("/") == 1):
        raise ValueError("the verifiable reward needs 'family' and 'params' columns or an id 'family/topic'")
    family, topic = identifier.split("/")
    rebuilt = make_prompt(family, topic, seed)
    if rebuilt.text != prompt[-1]["content"]:
        raise ValueError(f"row {identifier!r}: its prompt differs from the verifiable prompt of seed {seed}")
    return family, rebuilt.params


def verifiable_reward(seed: int = 0) -> RewardFn:
    def score(candidates: Sequence[ResponseToScore]) -> list[float]:
        rewards = []
        for candidate in candidates:
            family, params = _verifiable_checker(candidate.row, candidate.prompt, seed)
            rewards.append(float(check(family, candidate.response, params)))
        return rewards

    return score


def model_reward(path: str, batch_size: int = 8, max_length: int = 1024) -> RewardFn:
    """A sequence-classification reward model with a single output logit."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    if model.config.num_labels != 1:
        raise ValueError(
            f"{path}: a reward model has one output logit, this one has {model.config.num_labels}"
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    if torch.cuda.is_available():
        model = model.to("cuda")

    def render(candidate: ResponseToScore) -> str:
        messages = candidate.prompt + assistant(candidate.response)
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(m["content"] for m in messages)

    @torch.inference_mode()
    def score(candidates: Sequence[ResponseToScore]) -> list[float]:
        rewards: list[float] = []
        for start in range(0, len(candidates), batch_size):
            texts = [render(c) for c in candidates[start : start + batch_size]]
            batch = tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
                add_special_tokens=not tokenizer.chat_template,
            )
            logits = model(**batch.to(model.device)).logits
            rewards.extend(logits[:, 0].float().cpu().tolist())
        return rewards

    return score


def judge_reward(config: JudgeConfig, client: Any = None) -> RewardFn:
    """An LLM judge (``client``: an ``openai.OpenAI``-like object, built from the config when omitted)."""
    judge_client = client if client is not None else config.client()

    def rate(candidate: ResponseToScore) -> float:
        turns = candidate.prompt
        question = (
            turns[-1]["content"]
            if len(turns) == 1
            else "\n".join(f"{m['role']}: {m['content']}" for m in turns)
        )
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_TEMPLATE.format(question=question, answer=candidate.response)},
        ]
        return parse_rating(complete(judge_client, config, messages))

    def score(candidates: Sequence[ResponseToScore]) -> list[float]:
        return run_parallel(rate, list(candidates), config.parallel, "judging responses")

    return score
