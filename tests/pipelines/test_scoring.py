"""The implicit-reward log-probs are the trainer's: same tokenization, same completion tokens, same sums."""

import pytest
import torch

from trainer.config import TrainingConfig, TrainRun
from trainer.data import load_preference_dataset
from trainer.logprobs import completion_logps, split_ids
from trainer.models import load_policy
from trainer.trainer import PreferenceConfig, PreferenceTrainer


def test_completion_logps_match_the_trainers_sequence_logps(tmp_path, seed_file):
    _, dataset = load_preference_dataset(seed_file)
    model, tokenizer = load_policy("tiny")
    args = PreferenceConfig.from_training(
        TrainingConfig(model="tiny", batch_size=4, max_length=96),
        TrainRun(data=str(seed_file), output_dir=str(tmp_path)),
    )
    trainer = PreferenceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = PreferenceTrainer._sequence_logps(logits, batch["input_ids"], batch["completion_mask"])
    prompts = list(dataset["prompt"]) * 2
    responses = [c[-1]["content"] for c in dataset["chosen"]] + [
        r[-1]["content"] for r in dataset["rejected"]
    ]
    # the dataloader shuffles: match rows by their token ids
    rows = [tuple(ids.tolist()) for ids in batch["input_ids"]]
    scores = completion_logps(model, tokenizer, prompts, responses, batch_size=3, max_length=96)
    for prompt, response, score in zip(prompts, responses, scores, strict=True):
        prompt_ids, completion_ids = split_ids(tokenizer, prompt, response)
        ids = tuple(prompt_ids + completion_ids)
        row = next(i for i, r in enumerate(rows) if r[: len(ids)] == ids)
        assert score == pytest.approx(expected[row].item(), abs=1e-4)
    assert len(set(scores)) == len(scores)


def test_the_completion_is_the_assistant_turn(tiny_model):
    _, tokenizer = load_policy("tiny")
    prompt = [{"role": "user", "content": "hi"}]
    prompt_ids, completion_ids = split_ids(tokenizer, prompt, "hello there")
    assert tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(completion_ids).startswith("hello there<|im_end|>")


def test_truncation_keeps_the_start(tiny_model):
    model, tokenizer = load_policy("tiny")
    prompt = [{"role": "user", "content": "hi"}]
    prompt_length = len(split_ids(tokenizer, prompt, "x")[0])
    long, short = "one two three four five six seven eight", "one two"
    cut = prompt_length + len(split_ids(tokenizer, prompt, short)[1]) - 1  # drops the end-of-turn tokens
    full_short = completion_logps(model, tokenizer, [prompt], [short], max_length=256)[0]
    truncated = completion_logps(model, tokenizer, [prompt, prompt], [long, short], max_length=cut)
    assert truncated[1] > full_short  # fewer tokens summed: a larger (less negative) log-prob
    assert truncated[0] != truncated[1]
