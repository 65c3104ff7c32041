"""Resumable pipeline runs: ``DIR/state.json`` holds the run's configuration and its finished steps.

A step (``"iter_1/generate"``, ``"iter_1/train"``, ...) is recorded only after its artefacts are complete on
disk, so an interrupted run, started again with the same command, skips every recorded step and redoes the one
that was cut off. A second run in the same folder with a different configuration is refused (except for the
keys named ``extendable``, such as the number of iterations, which a later run may raise)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class ConfigMismatchError(ValueError):
    """The output folder holds a run with a different configuration."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(scratch, path)


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write ``rows`` as JSON lines (atomically); returns the number of rows."""
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    write_atomic(path, "".join(lines))
    return len(lines)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


class PipelineState:
    """The finished steps of one pipeline run in ``directory``."""

    def __init__(self, directory: Path, config: Mapping[str, Any], extendable: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        config = json.loads(json.dumps(dict(config)))  # JSON-normal form, so that comparisons are exact
        if self.path.exists():
            stored = json.loads(self.path.read_text())
            differing = sorted(
                key
                for key in set(stored["config"]) | set(config)
                if key not in extendable and stored["config"].get(key) != config.get(key)
            )
            if differing:
                details = "; ".join(
                    f"{k}: {stored['config'].get(k)!r} -> {config.get(k)!r}" for k in differing
                )
                raise ConfigMismatchError(
                    f"{self.directory} holds a run with another configuration ({details}); "
                    "use a new output folder or the same options"
                )
            self.steps: dict[str, dict[str, Any]] = stored["steps"]
        else:
            self.steps = {}
        self.config = config
        self._save()

    def done(self, step: str) -> bool:
        return step in self.steps

    def info(self, step: str) -> dict[str, Any]:
        return self.steps[step]

    def record(self, step: str, info: Mapping[str, Any]) -> None:
        self.steps[step] = {"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), **info}
        self._save()

    def run(self, step: str, work: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """Run ``work`` unless ``step`` is recorded; record what it returns (JSON-serializable facts)."""
        if self.done(step):
            log.info("%s: already done, skipping", step)
            return self.info(step)
        log.info("%s: starting", step)
        self.record(step, work())
        return self.info(step)

    def _save(self) -> None:
        write_atomic(self.path, json.dumps({"config": self.config, "steps": self.steps}, indent=2) + "\n")
