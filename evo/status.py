"""What happened to a candidate: the one list of statuses the archive, the loop and the reports share.

A candidate moves through ``proposed`` -> ``invalid`` | ``duplicate`` | ``training`` -> ``done`` | ``failed``;
``unparseable`` marks LLM output that held no code. The values are plain strings (``Status`` is a ``StrEnum``),
so archive rows, JSON and wandb tables hold the same text as before the enum existed."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PROPOSED = "proposed"
    UNPARSEABLE = "unparseable"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    TRAINING = "training"
    DONE = "done"
    FAILED = "failed"


# Nothing more happens to a candidate with a final status.
FINAL = (Status.UNPARSEABLE, Status.INVALID, Status.DUPLICATE, Status.DONE, Status.FAILED)
# The candidate's code passed the sandbox and went to training.
TRAINED = (Status.TRAINING, Status.DONE, Status.FAILED)
