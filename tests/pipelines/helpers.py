"""The pipeline tests' tiny budgets: 4 prompts, 2 samples of 8 new tokens, 1 optimizer step of batch 4, short
sequences."""

from __future__ import annotations

from tests.builders import TOPICS

PIPELINE_TOPICS = TOPICS[:4]
FAST_TRAIN = ["--max-steps", "1", "--batch-size", "4", "--max-length", "96"]
FAST_SAMPLING = ["--num-samples", "2", "--max-new-tokens", "8", "--sampling-batch-size", "8"]
