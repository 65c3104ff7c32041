"""The launcher's watch over its llama.cpp server: a server that died is restarted, a bounded number of times in a
row with backoff, and a server that cannot be brought back makes the LLM proposer unavailable.

The LLM proposer calls ``ensure_serving()`` before each request (and after a request that got no reply) and
``served()`` after a reply; each restart is announced through ``notify`` (the terminal and ``search.log``); the
give-up is a ``ProposerUnavailable`` whose message ends with the last lines of the server's log."""

from __future__ import annotations

import time
from collections.abc import Callable

from evo.llama_server import LlamaServer, LlamaServerError
from evo.proposers.base import ProposerUnavailable


def last_lines(text: str, n: int = 10) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


class ServerWatch:
    """Restarts ``server`` when its process has exited; ``max_restarts`` in a row without a reply in between."""

    def __init__(
        self,
        server: LlamaServer,
        notify: Callable[[str], None],
        max_restarts: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.server = server
        self.notify = notify
        self.max_restarts = max_restarts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.restarts_in_a_row = 0
        self.failure: str | None = None  # set once the server is given up

    def served(self) -> None:
        """A reply came back: the server works, so the next death starts a fresh series of restarts."""
        self.restarts_in_a_row = 0

    def ensure_serving(self) -> None:
        """Return when the server process is up (restarting it if it died); raise ``ProposerUnavailable`` when it
        cannot be brought back."""
        if self.failure is not None:
            raise ProposerUnavailable(self.failure)
        if self.server.running:
            return
        died = f"the llama.cpp server (pid {self.server.pid}) died with exit code {self.server.exit_code}"
        log_tail = self.server.log_tail()
        while self.restarts_in_a_row < self.max_restarts:
            self.restarts_in_a_row += 1
            delay = self.backoff_s * 2 ** (self.restarts_in_a_row - 1)
            self.notify(
                f"{died}; restarting it in {delay:.0f}s ({self.restarts_in_a_row}/{self.max_restarts})"
            )
            self.sleep(delay)
            try:
                self.server.start()
            except LlamaServerError as err:
                log_tail = str(err)
                continue
            self.notify(f"llama.cpp server restarted (pid {self.server.pid}) at {self.server.base_url}")
            return
        self.failure = (
            f"the llama.cpp server cannot serve: {died}, and {self.max_restarts} restarts in a row did not bring "
            f"it back; the last lines of its log ({self.server.log_path}):\n{last_lines(log_tail)}"
        )
        raise ProposerUnavailable(self.failure)
