"""Summed log-probabilities of responses given their prompts, tokenized as the trainer tokenizes them.

The prompt is rendered with the chat template and the generation prompt; the completion is what the template
adds for the assistant turn (its content plus the end-of-turn tokens), exactly TRL's conversational split, so
that ``log pi(y | x)`` here is the quantity the preference losses train on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rich.progress import Progress
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer
from trl.trainer.utils import selective_log_softmax

from trainer.pipelines.common import Messages, assistant


def split_ids(tokenizer: Tokenizer, prompt: Messages, response: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the completion (the template's assistant turn holding ``response``)."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + assistant(response), tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    shared = 0
    while shared < min(len(prompt_ids), len(full_ids)) and prompt_ids[shared] == full_ids[shared]:
        shared += 1
    return full_ids[:shared], full_ids[shared:]


@torch.inference_mode()
def completion_logps(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: Sequence[Messages],
    responses: Sequence[str],
    batch_size: int = 8,
    max_length: int = 256,
    description: str = "scoring",
) -> list[float]:
    """``log pi(response | prompt)`` summed over the completion tokens that fit in ``max_length`` (the start
    is kept, as the trainer's default truncation does)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores: list[float] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=len(prompts))
        for start in range(0, len(prompts), batch_size):
            rows = []
            for prompt, response in zip(
                prompts[start : start + batch_size], responses[start : start + batch_size], strict=True
            ):
                prompt_ids, completion_ids = split_ids(tokenizer, prompt, response)
                ids = (prompt_ids + completion_ids)[:max_length]
                rows.append((ids, len(prompt_ids)))
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            completion = torch.zeros((len(rows), width), dtype=torch.bool)
            for row, (ids, prompt_length) in enumerate(rows):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                completion[row, prompt_length : len(ids)] = True
            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
            ).logits
            picked = selective_log_softmax(logits[:, :-1].float(), input_ids[:, 1:].to(device))
            scores.extend((picked * completion[:, 1:].to(device)).sum(-1).cpu().tolist())
            progress.advance(task, len(rows))
    model.train(was_training)
    return scores
