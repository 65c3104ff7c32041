"""The driver's side of live training curves: the lines each training candidate's worker appended to its
``steps.jsonl`` (``trainer.step_log``) since the last look."""

from __future__ import annotations

import json
from pathlib import Path

STEP_LOG = "steps.jsonl"


class StepTail:
    def __init__(self) -> None:
        self.offsets: dict[Path, int] = {}

    def read(self, path: Path) -> list[dict]:
        """Complete new lines of ``path`` (a half-written last line waits for the next look)."""
        try:
            with path.open("rb") as stream:
                size = stream.seek(0, 2)
                offset = self.offsets.get(path, 0)
                if size < offset:  # rewritten: the task started again
                    offset = 0
                stream.seek(offset)
                chunk = stream.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offsets[path] = offset + end
        return [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
