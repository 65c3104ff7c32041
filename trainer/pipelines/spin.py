"""SPIN: self-play fine-tuning. Chen et al. 2024, "Self-Play Fine-Tuning Converts Weak Language Models to
Strong Language Models" (ICML), Algorithm 1.

    python -m trainer.pipelines.spin --model M --sft-data D --iterations T --output-dir DIR [options]

The training flags are ``trainer.config.TrainingConfig``'s (``--loss`` defaults to ``spin``; ``spin_hinge`` is
SPIN's hinge variant); every iteration trains with them.

Iteration t (t = 1..T): the opponent is the checkpoint of iteration t-1 (``--model`` for t = 1). It answers
every SFT prompt (sampling options: defaults T=1.0, top_p=1.0, 256 new tokens, as SPIN's vLLM generation
script); each (SFT answer, generated answer) is a pair in SPIN's ``real``/``generated`` format. The training
data of iteration t are its own pairs plus those of iteration t-1 (SPIN mixes the current and the previous
iteration's synthetic data; ``--no-mix-previous`` turns it off). The opponent starts training and is the
reference of the ``spin`` loss (``model`` and ``ref_model`` of the training config are set to it).

SFT data (``.jsonl``/``.json``): rows with ``messages`` (a conversation ending with the assistant's answer) or
``prompt`` (string or messages) plus ``completion`` (string or one assistant message).

Artefacts (a rerun of the same command resumes after the last finished step, see ``state.py``)::

    DIR/state.json                    configuration and finished steps (iter_t/generate, iter_t/train)
    DIR/iter_t/generated.jsonl        real, generated (conversations), iteration: this iteration's pairs
    DIR/iter_t/train.jsonl            the pairs trained on (this + the previous iteration's)
    DIR/iter_t/model/                 checkpoint (safetensors + tokenizer) and metrics.json
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from trainer.arguments import add_arguments, from_arguments
from trainer.chat import Messages, as_messages, assistant
from trainer.config import LAUNCH_FIELDS, TrainingConfig
from trainer.data import DataFormatError, read_rows
from trainer.generation import SamplingConfig, add_sampling_arguments, sample_responses, sampling_from_args
from trainer.pipelines.common import (
    file_identity,
    setup_logging,
    train,
    train_facts,
)
from trainer.pipelines.state import PipelineState, read_jsonl, write_jsonl

log = logging.getLogger(__name__)
SPIN_SAMPLING = SamplingConfig(num_samples=1, temperature=1.0, top_p=1.0, max_new_tokens=256)
SPIN_LOSSES = ("spin", "spin_hinge")
SPIN_TRAINING = TrainingConfig(loss="spin")  # SPIN's logistic loss; everything else the default training


@dataclass(frozen=True)
class SpinConfig:
    """``training.model`` is the SFT policy of iteration 1; each iteration trains with ``training``."""

    sft_data: str
    output_dir: str
    training: TrainingConfig = field(default_factory=lambda: SPIN_TRAINING)
    iterations: int = 3
    mix_previous: bool = True
    sampling: SamplingConfig = field(default_factory=lambda: SPIN_SAMPLING)
    ref_cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.training.loss not in SPIN_LOSSES:
            raise ValueError(
                f"SPIN trains with one of {', '.join(SPIN_LOSSES)}, got loss {self.training.loss!r}"
            )


@dataclass(frozen=True)
class SftExample:
    prompt: Messages
    answer: str


def load_sft(path: str | Path) -> list[SftExample]:
    """SFT examples from ``messages`` conversations or ``prompt``/``completion`` rows."""
    examples = []
    for number, row in enumerate(read_rows(path)):
        if "messages" in row:
            messages = row["messages"]
            if not (
                isinstance(messages, list) and len(messages) >= 2 and messages[-1].get("role") == "assistant"
            ):
                raise DataFormatError(
                    number, "messages", "must be a conversation ending with an assistant answer"
                )
            prompt, answer = messages[:-1], messages[-1].get("content")
        elif "prompt" in row and "completion" in row:
            prompt, answer = row["prompt"], row["completion"]
            if isinstance(answer, list) and len(answer) == 1 and answer[0].get("role") == "assistant":
                answer = answer[0].get("content")
        else:
            raise DataFormatError(number, "<row>", "needs 'messages' or 'prompt' and 'completion'")
        if not isinstance(answer, str) or not answer.strip():
            raise DataFormatError(number, "completion", "must hold a non-empty assistant answer")
        if not (isinstance(prompt, str) and prompt) and not (isinstance(prompt, list) and prompt):
            raise DataFormatError(number, "prompt", "must be a non-empty string or list of messages")
        examples.append(SftExample(as_messages(prompt), answer))
    return examples


def spin_pairs(
    examples: Sequence[SftExample], generated: Sequence[Sequence[str]], iteration: int
) -> list[dict]:
    """One SPIN row per (example, generated answer): SFT answer ``real``, opponent's answer ``generated``."""
    return [
        {
            "real": ex.prompt + assistant(ex.answer),
            "generated": ex.prompt + assistant(text),
            "iteration": iteration,
        }
        for ex, texts in zip(examples, generated, strict=True)
        for text in texts
    ]


def run_spin(config: SpinConfig) -> list[str]:
    """Run (or resume) the SPIN iterations; returns the checkpoint of each iteration."""
    if config.iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {config.iterations}")
    directory = Path(config.output_dir)
    recorded = asdict(config) | {"sft_data": file_identity(config.sft_data)}
    recorded.pop("output_dir")
    state = PipelineState(directory, recorded, extendable=("iterations",))
    examples = load_sft(config.sft_data)
    conversations = [ex.prompt for ex in examples]
    checkpoints = []
    for t in range(1, config.iterations + 1):
        folder = directory / f"iter_{t}"
        opponent = config.training.model if t == 1 else str(directory / f"iter_{t - 1}" / "model")
        sampling = replace(config.sampling, seed=config.sampling.seed + t)

        def generate(opponent=opponent, sampling=sampling, folder=folder, t=t) -> dict:
            rows = spin_pairs(examples, sample_responses(opponent, conversations, sampling), t)
            return {"pairs": write_jsonl(folder / "generated.jsonl", rows), "opponent": opponent}

        state.run(f"iter_{t}/generate", generate)

        def fit(opponent=opponent, folder=folder, t=t) -> dict:
            rows = read_jsonl(folder / "generated.jsonl")
            if config.mix_previous and t > 1:
                rows += read_jsonl(directory / f"iter_{t - 1}" / "generated.jsonl")
            count = write_jsonl(folder / "train.jsonl", rows)
            training = replace(config.training, model=opponent, ref_model=opponent)
            result = train(training, folder / "train.jsonl", folder / "model", config.ref_cache_dir)
            return train_facts(result) | {"pairs": count, "opponent": opponent}

        state.run(f"iter_{t}/train", fit)
        checkpoints.append(str(folder / "model"))
    return checkpoints


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.pipelines.spin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sft-data", required=True, help="SFT .jsonl/.json (messages or prompt/completion rows)"
    )
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--mix-previous",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train on the previous iteration's pairs too (SPIN's default)",
    )
    add_sampling_arguments(parser, SPIN_SAMPLING)
    parser.set_defaults(max_new_tokens=SPIN_SAMPLING.max_new_tokens)
    parser.add_argument(
        "--ref-cache-dir", default=None, help="shared reference log-prob cache (sequence-level losses)"
    )
    add_arguments(parser, SPIN_TRAINING, omit=LAUNCH_FIELDS, title="training")
    args = parser.parse_args(argv)
    try:
        config = SpinConfig(
            sft_data=args.sft_data,
            output_dir=args.output_dir,
            training=from_arguments(SPIN_TRAINING, args),
            iterations=args.iterations,
            mix_previous=args.mix_previous,
            sampling=sampling_from_args(args),
            ref_cache_dir=args.ref_cache_dir,
        )
    except ValueError as err:
        parser.error(str(err))
    setup_logging()
    checkpoints = run_spin(config)
    print(f"SPIN: {len(checkpoints)} iterations; final checkpoint {checkpoints[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
