"""Summed log-probabilities of completions given their prompts, tokenized as the trainer tokenizes them.

The split follows TRL's DPO trainer: a conversational prompt is rendered with the chat template and the
generation prompt, and the completion is what the template adds for the assistant turn (its content plus the
end-of-turn tokens); a plain-text completion gets the EOS token appended. So ``log pi(y | x)`` here is the
quantity the preference losses train on (the proxy fitness, SPA's implicit reward)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rich.progress import Progress
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer
from trl.trainer.utils import selective_log_softmax

from trainer.chat import Messages, assistant


def split_ids(
    tokenizer: Tokenizer, prompt: str | Messages, completion: str | Messages
) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the completion. With a conversational prompt, a string completion is the
    assistant's reply; with a plain-text prompt the completion must be text."""
    if isinstance(prompt, list):
        reply = assistant(completion) if isinstance(completion, str) else list(completion)
        prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(prompt + reply, tokenize=False)
    else:
        if not isinstance(completion, str):
            raise TypeError("a plain-text prompt takes a plain-text completion, not chat messages")
        if not completion.endswith(tokenizer.eos_token):
            completion += tokenizer.eos_token
        prompt_text, full_text = prompt, prompt + completion
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
    prompts: Sequence[str | Messages],
    completions: Sequence[str | Messages],
    batch_size: int = 8,
    max_length: int = 256,
    description: str = "scoring",
) -> list[float]:
    """``log pi(completion | prompt)`` summed over the completion tokens that fit in ``max_length`` prompt and
    completion tokens (the start is kept, as the trainer's default truncation does). Runs in eval mode on the
    model's device and leaves the model's mode as it was."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores: list[float] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=len(prompts))
        for start in range(0, len(prompts), batch_size):
            rows = []
            for prompt, completion in zip(
                prompts[start : start + batch_size], completions[start : start + batch_size], strict=True
            ):
                prompt_ids, completion_ids = split_ids(tokenizer, prompt, completion)
                ids = (prompt_ids + completion_ids)[:max_length]
                rows.append((ids, len(prompt_ids)))
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            completion_mask = torch.zeros((len(rows), width), dtype=torch.bool)
            for row, (ids, prompt_length) in enumerate(rows):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                completion_mask[row, prompt_length : len(ids)] = True
            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
            ).logits
            picked = selective_log_softmax(logits[:, :-1].float(), input_ids[:, 1:].to(device))
            scores.extend((picked * completion_mask[:, 1:].to(device)).sum(-1).cpu().tolist())
            progress.advance(task, len(rows))
    model.train(was_training)
    return scores
