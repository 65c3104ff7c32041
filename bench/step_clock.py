"""The time of each optimizer step's end, for the CPU benches (``python bench/<name>.py`` puts this folder on the
path). Intervals from step 2 on exclude start-up and the first step's warm-up."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())

    @property
    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]

    @property
    def steps_per_second(self) -> float:
        return (len(self.marks) - 1) / (self.marks[-1] - self.marks[0])
