"""Terminal progress of a search (rich): generation, candidates in flight, best so far, LLM spend."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.status import Status as Spinner

from evo.archive import Archive, Candidate
from evo.config import SearchConfig
from evo.status import Status

log = logging.getLogger("evo")


class SearchProgress:
    def __init__(self, config: SearchConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self._status: Spinner | None = None
        self.best: tuple[float, str] | None = None
        self.spend = 0.0
        self.disabled: dict[str, str] = {}  # proposer -> why it can no longer propose

    def start(self) -> None:
        if self._status is None and self.console.is_terminal:
            self._status = self.console.status("starting the search")
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _headline(self) -> str:
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else "best: none yet"
        off = f" | disabled: {', '.join(self.disabled)}" if self.disabled else ""
        return f"{best} | LLM spend ${self.spend:.4f}{off}"

    def event(self, message: str) -> None:
        log.info(message)
        self.console.log(message)
        if self._status is not None:
            self._status.update(f"{message} | {self._headline()}")

    def warn(self, message: str) -> None:
        """Something the user must see (weaker sandbox isolation): a warning in the log, in red on the terminal."""
        log.warning(message)
        self.console.log(message, style="bold red", markup=False)

    def result(self, archive: Archive, candidate: Candidate, result) -> None:
        self.spend = archive.llm_spend()["cost_usd"]
        if result.status == Status.DONE:
            if self.best is None or result.fitness > self.best[0]:
                self.best = (result.fitness, candidate.name)
            self.event(
                f"candidate {candidate.id} ({candidate.name}): fitness {result.fitness:.4f} +- {result.stderr:.4f}"
            )
        else:
            self.event(f"candidate {candidate.id} ({candidate.name}): failed: {(result.reason or '')[:200]}")
