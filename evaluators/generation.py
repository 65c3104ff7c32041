"""Batched chat generation with transformers, shared by the evaluators and the verifiable data builder.

Conversations are rendered with the tokenizer's chat template (or a FastChat conversation template by name),
padded on the left, sorted by length so that batches waste little padding, and decoded without the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rich.progress import Progress
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from trainer.models import load_policy

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings: temperature 0 means greedy; `n` completions per prompt."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    batch_size: int = 16
    seed: int = 0


def load_model(model: str) -> tuple[PreTrainedModel, Tokenizer]:
    """A checkpoint directory, a hub id, or a preset name (`smollm2-135m-instruct`, `tiny`), in eval mode."""
    policy, tokenizer = load_policy(model)
    policy.eval()
    return policy, tokenizer


def render(tokenizer: Tokenizer, messages: Messages, conv_template: str | None = None) -> str:
    """The prompt text that asks the model for the next assistant turn of `messages`."""
    if conv_template is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    from fastchat.conversation import get_conv_template

    conv = get_conv_template(conv_template)
    for message in messages:
        if message["role"] == "system":
            conv.set_system_message(message["content"])
        else:
            conv.append_message(
                conv.roles[0] if message["role"] == "user" else conv.roles[1], message["content"]
            )
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def _stop_ids(model: PreTrainedModel, tokenizer: Tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def _generate_batch(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int, options: dict
) -> torch.Tensor:
    """`n` continuations per row. The prompt is encoded once and its KV cache copied `n` times, instead of
    `num_return_sequences`, which would encode every prompt `n` times (as costly as decoding on a CPU)."""
    if n == 1:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded positions
    cache = model(
        input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=positions[:, :-1]
    ).past_key_values
    cache.batch_repeat_interleave(n)
    return model.generate(
        input_ids=input_ids.repeat_interleave(n, dim=0),
        attention_mask=attention_mask.repeat_interleave(n, dim=0),
        past_key_values=cache,
        **options,
    )


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    config: SamplingConfig,
    description: str = "generating",
) -> list[list[str]]:
    """`config.n` completions for each rendered prompt, in the order of `prompts`."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    options = dict(
        max_new_tokens=config.max_new_tokens,
        eos_token_id=_stop_ids(model, tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    if config.temperature > 0:
        options.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    torch.manual_seed(config.seed)
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=len(prompts) * config.n)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            output = _generate_batch(model, inputs["input_ids"], inputs["attention_mask"], config.n, options)
            texts = tokenizer.batch_decode(
                output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
            for row, index in enumerate(batch):
                results[index] = [t.strip() for t in texts[row * config.n : (row + 1) * config.n]]
            progress.advance(task, len(batch) * config.n)
    return results


def _truncate_at_stop(text: str, conv_template: str) -> str:
    """Cut a reply where the FastChat template's stop string starts, as FastChat's answer generation does."""
    from fastchat.conversation import get_conv_template

    stops = get_conv_template(conv_template).stop_str
    for stop in [stops] if isinstance(stops, str) else stops or []:
        text = text.split(stop)[0]
    return text.strip()


def chat(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    conversations: Sequence[Messages],
    config: SamplingConfig,
    conv_template: str | None = None,
    description: str = "generating",
) -> list[list[str]]:
    """`config.n` assistant replies to each conversation."""
    prompts = [render(tokenizer, messages, conv_template) for messages in conversations]
    replies = generate(model, tokenizer, prompts, config, description)
    if conv_template is None:
        return replies
    return [[_truncate_at_stop(reply, conv_template) for reply in row] for row in replies]
