"""AEPO: annotation-efficient preference optimization's data step. Jinnai et al. 2024, "Annotation-Efficient
Preference Optimization for Language Model Alignment".

    python -m trainer.pipelines.aepo FILE --num_responses N --num_annotations k [--west_of_n]
        [--diversity_penalty L] [--similarity sentbert] [--reward verifiable|MODEL_PATH|judge] --output OUT

For each prompt, k of its N responses are chosen by diverse MBR (``aepo_select``: agree with the other
responses, disagree with each other), and only those k are annotated by the reward. Then DPO trains on the
output (``python -m trainer.train --data OUT``).

Input (``.jsonl``/``.json``), one row per prompt: the prompt column (``--prompt-column``, default ``prompt``;
a string or chat messages) and the responses, either as a ``responses`` list or as columns ``response_0`` ..
``response_{N-1}``. The first N responses are used; a row with fewer is an error. The prompt column is never a
response. Other columns (``id``, ``family``, ...) are copied to the output.

Output (``.jsonl``), one row per prompt:

- k = 2, or ``--west_of_n``: ``prompt``, ``chosen`` (the best annotated response), ``rejected`` (the worst),
  ``chosen_reward``, ``rejected_reward``, ``selected`` (the k indices among the N). Rows whose annotated
  rewards all tie carry no preference and are dropped (counted in the summary).
- otherwise: ``prompt``, ``ranked_responses`` / ``ranked_rewards`` / ``ranked_indices`` (the k annotated
  responses, best first).

Chosen, rejected and prompts are chat messages (``--format conversational``, TRL's conversational format) or
plain strings (``--format plain``). A NaN reward (an unparseable judge reply) leaves that response out.

Rewards: ``verifiable`` (the offline checkers; rows need ``family``+``params`` or a verifiable ``id``), a path
to a sequence-classification reward model, or ``judge`` (OpenAI-compatible endpoint; ``--judge-base-url``,
``--judge-model``, key from ``$OPENAI_API_KEY`` or ``--judge-api-key-env``). See ``rewards.py``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from evaluators.judge import add_judge_arguments, judge_from_arguments
from trainer.chat import Messages, as_messages
from trainer.data import DataFormatError, read_rows
from trainer.pipelines.aepo_select import EMBEDDERS, select_diverse
from trainer.pipelines.common import setup_logging
from trainer.pipelines.rewards import ResponseToScore, RewardFn, judge_reward, model_reward, verifiable_reward
from trainer.pipelines.state import write_jsonl

log = logging.getLogger(__name__)
FORMATS = ("conversational", "plain")


@dataclass(frozen=True)
class AepoConfig:
    num_responses: int
    num_annotations: int = 2
    west_of_n: bool = False
    diversity_penalty: float = 1.0
    similarity: str = "sentbert"
    prompt_column: str = "prompt"
    format: str = "conversational"

    def __post_init__(self) -> None:
        if self.num_annotations < 2:
            raise ValueError(
                f"--num_annotations must be >= 2: a preference pair needs two annotated responses, got "
                f"{self.num_annotations}"
            )
        if self.num_annotations > self.num_responses:
            raise ValueError(
                f"--num_annotations={self.num_annotations} exceeds --num_responses={self.num_responses}"
            )
        if self.similarity not in EMBEDDERS:
            raise ValueError(f"unknown similarity {self.similarity!r}; known: {', '.join(EMBEDDERS)}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown output format {self.format!r}; known: {', '.join(FORMATS)}")

    @property
    def pairs(self) -> bool:
        return self.west_of_n or self.num_annotations == 2


@dataclass(frozen=True)
class AepoExample:
    prompt: Messages
    responses: list[str]
    extra: dict[str, Any]


@dataclass(frozen=True)
class AepoResult:
    output: str
    prompts: int
    rows_written: int
    dropped_ties: int
    annotations: int


def _response_columns(row: Mapping[str, Any]) -> list[str]:
    columns, index = [], 0
    while f"response_{index}" in row:
        columns.append(f"response_{index}")
        index += 1
    return columns


def parse_example(row: Mapping[str, Any], number: int, config: AepoConfig) -> AepoExample:
    prompt = row.get(config.prompt_column)
    if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
        raise DataFormatError(
            number, config.prompt_column, "must be a non-empty string or list of chat messages"
        )
    if "responses" in row:
        responses, consumed = row["responses"], ["responses"]
    else:
        consumed = _response_columns(row)
        responses = [row[column] for column in consumed]
    if config.prompt_column in consumed:
        raise DataFormatError(number, config.prompt_column, "is also a response column")
    if not isinstance(responses, list) or len(responses) < config.num_responses:
        found = len(responses) if isinstance(responses, list) else 0
        raise DataFormatError(
            number, "responses", f"holds {found} responses, --num_responses is {config.num_responses}"
        )
    responses = responses[: config.num_responses]
    if not all(isinstance(r, str) for r in responses):
        raise DataFormatError(number, "responses", "must all be strings")
    extra = {k: v for k, v in row.items() if k != config.prompt_column and k not in consumed}
    return AepoExample(as_messages(prompt), responses, extra)


def select_all(examples: Sequence[AepoExample], config: AepoConfig) -> list[list[int]]:
    """The diverse-MBR selection of every example (one embedding pass over all responses)."""
    embed = EMBEDDERS[config.similarity]
    embeddings = embed([r for ex in examples for r in ex.responses])
    selections, start = [], 0
    for example in track(examples, description="diverse MBR selection", transient=True):
        block = embeddings[start : start + len(example.responses)]
        start += len(example.responses)
        selections.append(
            select_diverse(np.asarray(block @ block.T), config.num_annotations, config.diversity_penalty)
        )
    return selections


def _render(messages: Messages, config: AepoConfig) -> Messages | str:
    if config.format == "conversational":
        return messages
    return "\n\n".join(m["content"] for m in messages)


def output_row(
    example: AepoExample, selected: list[int], rewards: list[float], config: AepoConfig
) -> dict | None:
    """The output row of one example, or None when its rewards carry no preference."""
    scored = sorted(
        ((r, i) for r, i in zip(rewards, selected, strict=True) if not math.isnan(r)),
        key=lambda pair: (-pair[0], pair[1]),
    )
    prompt = _render(example.prompt, config)
    if config.pairs:
        if len(scored) < 2 or scored[0][0] == scored[-1][0]:
            return None
        (best_reward, best), (worst_reward, worst) = scored[0], scored[-1]
        return example.extra | {
            "prompt": prompt,
            "chosen": _render([{"role": "assistant", "content": example.responses[best]}], config),
            "rejected": _render([{"role": "assistant", "content": example.responses[worst]}], config),
            "chosen_reward": best_reward,
            "rejected_reward": worst_reward,
            "selected": selected,
        }
    return example.extra | {
        "prompt": prompt,
        "ranked_responses": [example.responses[i] for _, i in scored],
        "ranked_rewards": [r for r, _ in scored],
        "ranked_indices": [i for _, i in scored],
    }


def run_aepo(path: str | Path, output: str | Path, config: AepoConfig, reward: RewardFn) -> AepoResult:
    """Select, annotate and write; see the module docstring for the formats."""
    examples = [parse_example(row, number, config) for number, row in enumerate(read_rows(path))]
    selections = select_all(examples, config)
    candidates = [
        ResponseToScore(ex.extra, ex.prompt, ex.responses[i])
        for ex, sel in zip(examples, selections, strict=True)
        for i in sel
    ]
    rewards = reward(candidates)
    if len(rewards) != len(candidates):
        raise RuntimeError(f"the reward returned {len(rewards)} scores for {len(candidates)} responses")
    rows, position = [], 0
    for example, selected in zip(examples, selections, strict=True):
        row = output_row(example, selected, rewards[position : position + len(selected)], config)
        position += len(selected)
        if row is not None:
            rows.append(row)
    written = write_jsonl(Path(output), rows)
    result = AepoResult(str(output), len(examples), written, len(examples) - written, len(candidates))
    log.info(
        "AEPO: %d prompts, %d annotations, %d rows written, %d dropped (tied rewards)",
        result.prompts,
        result.annotations,
        result.rows_written,
        result.dropped_ties,
    )
    return result


def make_reward(name: str, args: argparse.Namespace) -> RewardFn:
    if name == "verifiable":
        return verifiable_reward(args.verifiable_seed)
    if name == "judge":
        return judge_reward(judge_from_arguments(args, default_max_tokens=512))
    if not Path(name).exists():
        raise FileNotFoundError(
            f"--reward {name!r}: not 'verifiable', 'judge' or an existing reward-model folder"
        )
    return model_reward(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.pipelines.aepo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="input .jsonl/.json: a prompt and N responses per row")
    parser.add_argument("--num_responses", "--num-responses", type=int, required=True, help="N")
    parser.add_argument("--num_annotations", "--num-annotations", type=int, default=2, help="k (>= 2)")
    parser.add_argument(
        "--west_of_n", "--west-of-n", action="store_true", help="write the best and worst as a pair"
    )
    parser.add_argument("--diversity_penalty", "--diversity-penalty", type=float, default=1.0, help="L")
    parser.add_argument("--similarity", choices=sorted(EMBEDDERS), default="sentbert")
    parser.add_argument("--reward", default="verifiable", help="verifiable | judge | path to a reward model")
    parser.add_argument("--verifiable-seed", type=int, default=0, help="seed of the verifiable prompts (ids)")
    parser.add_argument("--prompt-column", default="prompt")
    parser.add_argument("--format", choices=FORMATS, default="conversational")
    parser.add_argument("--output", required=True, help="output .jsonl")
    add_judge_arguments(parser, default_model="gpt-4o")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        config = AepoConfig(
            num_responses=args.num_responses,
            num_annotations=args.num_annotations,
            west_of_n=args.west_of_n,
            diversity_penalty=args.diversity_penalty,
            similarity=args.similarity,
            prompt_column=args.prompt_column,
            format=args.format,
        )
    except ValueError as err:
        parser.error(str(err))
    result = run_aepo(args.file, args.output, config, make_reward(args.reward, args))
    print(
        f"AEPO: {result.annotations} annotations for {result.prompts} prompts -> {result.rows_written} rows "
        f"in {result.output} ({result.dropped_ties} dropped: tied rewards)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
