"""Parent side of the sandbox: warm zygote processes and the pool that runs candidates in them.

`SandboxPool.execute(source)` sends policy-checked source to a zygote, which forks a confined child for it
(see `sandbox.zygote`). Whatever the candidate does, the caller gets an `ExecutionResult`, never an exception:
a zygote that dies or stops answering is killed with everything it started and restarted for the next call.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sandbox.isolation import Limits, process_table, scrubbed_env

START_TIMEOUT_S = 180.0
REPLY_GRACE_S = 15.0
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = f"import sys; sys.path.insert(0, {_ROOT!r}); from sandbox.zygote import main; main()"


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to one candidate in the sandbox."""

    valid: bool
    stage: str | None  # None when valid, else "execution" or "gradient_tests"
    error: str | None
    fingerprint: str | None = None
    canonical_form: str | None = None
    output: str = ""  # the start of what the candidate printed
    details: dict[str, Any] = field(default_factory=dict)  # probe facts (SandboxPool.probe only)

    @classmethod
    def failure(cls, error: str) -> ExecutionResult:
        return cls(valid=False, stage="execution", error=error)


class ZygoteError(RuntimeError):
    """The zygote died, broke the protocol or stopped answering."""


def session_processes(session_id: int) -> list[int]:
    """Pids of every live process in the given session (a zygote and everything it started)."""
    return [p.pid for p in process_table() if p.session == session_id and p.state != "Z"]


class Zygote:
    """One warm zygote process: torch imported, isolated, forking a child per request."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._home: str | None = None
        self._buffer = b""
        self.isolation: dict[str, bool] = {}

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Launch the zygote and wait until it is warm (raises ZygoteError when it cannot start)."""
        self.close()
        self._home = tempfile.mkdtemp(prefix="sandbox-zygote-")
        with open(os.path.join(self._home, "zygote.log"), "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=scrubbed_env(self._home),
                cwd=self._home,
                start_new_session=True,
            )
        hello = self._read_reply(time.monotonic() + START_TIMEOUT_S)
        if not hello.get("ready"):
            self.close()
            raise ZygoteError(f"unexpected zygote greeting: {hello!r}")
        self.isolation = dict(hello["isolation"])

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply (raises ZygoteError)."""
        if not self.alive:
            raise ZygoteError("the zygote is not running")
        stdin = self._stream(self._proc.stdin)
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ZygoteError(f"the zygote stopped reading: {exc}") from exc
        return self._read_reply(time.monotonic() + timeout_s)

    @staticmethod
    def _stream(stream: IO[bytes] | None) -> IO[bytes]:
        if stream is None:
            raise ZygoteError("the zygote has no pipe")
        return stream

    def _read_reply(self, deadline: float) -> dict[str, Any]:
        fd = self._stream(self._proc.stdout if self._proc else None).fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZygoteError("the zygote did not answer in time")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise ZygoteError(f"the zygote exited: {self._log_tail()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as exc:
            raise ZygoteError(f"garbled zygote reply: {line[:200]!r}") from exc

    def _log_tail(self) -> str:
        if self._home is None:
            return ""
        try:
            return Path(self._home, "zygote.log").read_text(errors="replace")[-500:].strip()
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the zygote (it exits when its stdin closes), kill anything left in its session, clean up."""
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for pid in session_processes(self._proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._proc.wait()
            self._proc = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None
        self._buffer = b""


class SandboxPool:
    """A fixed number of zygotes shared by any number of threads.

    `start()` warms them all up front; otherwise each starts on first use. A zygote found dead is restarted;
    after `close()` the pool can still be used (it starts again).
    """

    def __init__(self, size: int = 1, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._zygotes = [Zygote() for _ in range(size)]
        self._idle: queue.Queue[Zygote] = queue.Queue()
        for zygote in self._zygotes:
            self._idle.put(zygote)

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> SandboxPool:
        """Start every zygote that is not running (a few seconds each: they import torch and warm up)."""
        for zygote in self._zygotes:
            if not zygote.alive:
                zygote.start()
        return self

    def close(self) -> None:
        """Stop every zygote and everything it started."""
        for zygote in self._zygotes:
            zygote.close()

    @property
    def isolation(self) -> dict[str, bool]:
        """Which OS defences the zygotes obtained (network namespace, read-only file system, subreaper)."""
        return dict(self._zygotes[0].isolation)

    @property
    def zygote_pids(self) -> list[int]:
        return [z.pid for z in self._zygotes if z.pid is not None]

    def execute(self, source: str, entry: str = "loss_fn") -> ExecutionResult:
        """Run policy-checked source in a fresh child (restricted globals): gradient tests, novelty keys."""
        return self._run({"mode": "validate", "source": source, "entry": entry})

    def run_unchecked(self, source: str, entry: str = "loss_fn") -> ExecutionResult:
        """Run source with full builtins and no policy check: only for tests of the executor's defences."""
        return self._run({"mode": "unchecked", "source": source, "entry": entry})

    def probe(self) -> dict[str, Any]:
        """What a sandbox child sees of its confinement (environment, limits, namespaces, open files)."""
        return self._run({"mode": "probe"}).details

    def _run(self, message: dict[str, Any]) -> ExecutionResult:
        zygote = self._idle.get()
        try:
            if not zygote.alive:
                zygote.start()
            reply = zygote.request(
                {**message, "limits": self.limits.to_json()}, self.limits.timeout_s + REPLY_GRACE_S
            )
        except (ZygoteError, OSError) as exc:
            zygote.close()
            return ExecutionResult.failure(f"the sandbox worker failed and will be restarted: {exc}")
        finally:
            self._idle.put(zygote)
        return ExecutionResult(
            valid=bool(reply.get("valid")),
            stage=reply.get("stage"),
            error=reply.get("error"),
            fingerprint=reply.get("fingerprint"),
            canonical_form=reply.get("canonical_form"),
            output=reply.get("output", ""),
            details=reply.get("details", {}),
        )
