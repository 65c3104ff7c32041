"""Granular (token-masked) DPO / TDPO training from the granular JSON format.

    python -m trainer.pipelines.granular --data FILE.json --model M --output-dir DIR
        [--loss granular_tdpo|granular]

Rows: ``prompt``, ``correct_response``, ``incorrect_response``, ``masked_region = [start_char, end_char,
flag]``. The flag decides which side is masked: 1 marks the span inside the correct (chosen) response, -1
inside the incorrect (rejected) one; on the flagged side only the tokens overlapping the span carry the
preference signal, the other side counts every token. ``granular_tdpo`` (default) adds TDPO2's sequential-KL
term on the same weights; ``granular`` is the token-masked DPO. The training flags are
``trainer.config.TrainingConfig``'s (``--loss`` defaults to ``granular_tdpo``).

Steps (resumable, ``state.py``): ``validate`` parses every row (a malformed row stops the run with its number
and field) and writes ``DIR/data_summary.json`` (rows per flag, span lengths, and how many spans start beyond
``--max-length`` tokens, where truncation would leave the flagged side without signal); ``train`` writes the
checkpoint and ``metrics.json`` to ``DIR/model/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.arguments import add_arguments, from_arguments
from trainer.config import LAUNCH_FIELDS, TrainingConfig
from trainer.data import load_preference_dataset, read_rows
from trainer.models import load_tokenizer
from trainer.pipelines.common import file_identity, setup_logging, train, train_facts
from trainer.pipelines.state import PipelineState, write_atomic

log = logging.getLogger(__name__)
GRANULAR_LOSSES = ("granular_tdpo", "granular")
GRANULAR_TRAINING = TrainingConfig(loss="granular_tdpo")  # everything else the default training


@dataclass(frozen=True)
class GranularConfig:
    data: str
    output_dir: str
    training: TrainingConfig = field(default_factory=lambda: GRANULAR_TRAINING)

    def __post_init__(self) -> None:
        if self.training.loss not in GRANULAR_LOSSES:
            raise ValueError(f"loss must be one of {GRANULAR_LOSSES}, got {self.training.loss!r}")


def _prefix_tokens(tokenizer: Any, prompt: Any, response_prefix: str) -> int:
    if isinstance(prompt, list):
        prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    else:
        prompt_text = prompt
    return len(tokenizer(prompt_text + response_prefix, add_special_tokens=False)["input_ids"])


def summarize(data: str | Path, model: str, max_length: int) -> dict[str, Any]:
    """Validate the file as granular data and describe its spans."""
    _, dataset = load_preference_dataset(data, fmt="granular")
    tokenizer = load_tokenizer(model)
    flags = {"chosen": 0, "rejected": 0}
    lengths, truncated = [], 0
    for raw, row in zip(read_rows(data), dataset, strict=True):
        side = "chosen" if row["chosen_span"][0] >= 0 else "rejected"
        flags[side] += 1
        start, end = row[f"{side}_span"]
        lengths.append(end - start)
        response = raw["correct_response"] if side == "chosen" else raw["incorrect_response"]
        truncated += _prefix_tokens(tokenizer, raw["prompt"], response[:start]) >= max_length
    if truncated:
        log.warning(
            "%d of %d spans start beyond max_length=%d tokens: truncation removes their signal",
            truncated,
            len(dataset),
            max_length,
        )
    return {
        "rows": len(dataset),
        "span_in_chosen": flags["chosen"],
        "span_in_rejected": flags["rejected"],
        "mean_span_chars": round(statistics.fmean(lengths), 2),
        "spans_beyond_max_length": truncated,
    }


def run_granular(config: GranularConfig) -> str:
    """Validate and train (or resume); returns the checkpoint folder."""
    directory = Path(config.output_dir)
    recorded = asdict(config) | {"data": file_identity(config.data)}
    recorded.pop("output_dir")
    state = PipelineState(directory, recorded)

    def validate() -> dict:
        summary = summarize(config.data, config.training.model, config.training.max_length)
        write_atomic(directory / "data_summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    state.run("validate", validate)
    state.run(
        "train",
        lambda: train_facts(train(config.training, Path(config.data), directory / "model")),
    )
    return str(directory / "model")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.pipelines.granular",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="granular .json/.jsonl file")
    parser.add_argument("--output-dir", required=True)
    add_arguments(parser, GRANULAR_TRAINING, omit=LAUNCH_FIELDS, title="training")
    args = parser.parse_args(argv)
    try:
        config = GranularConfig(
            data=args.data,
            output_dir=args.output_dir,
            training=from_arguments(GRANULAR_TRAINING, args),
        )
    except ValueError as err:
        parser.error(str(err))
    setup_logging()
    checkpoint = run_granular(config)
    print(f"{config.training.loss}: checkpoint in {checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
