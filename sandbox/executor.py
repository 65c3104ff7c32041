"""Parent side of the sandbox: warm zygote processes and the pool that runs candidates in them.

`SandboxPool.execute(source)` sends policy-checked source to a zygote, which forks confined children for it
(see `sandbox.zygote`): one traces it into a graph, another tests the graph. Whatever the candidate does, the
caller gets an `ExecutionResult`, never an exception: a zygote that dies or stops answering is killed with
everything it started and restarted for the next call. `SandboxPool.isolation` says which isolation
properties the machine gave the children; a missing one is logged as a warning when a zygote starts and is
carried by every result (`ExecutionResult.isolation_missing`).
"""

from __future__ import annotations

import json
import logging
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

from sandbox.isolation import PROPERTIES, Limits, process_table, scrubbed_env

START_TIMEOUT_S = 180.0
REPLY_GRACE_S = 15.0
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = f"import sys; sys.path.insert(0, {_ROOT!r}); from sandbox.zygote import main; main()"
log = logging.getLogger("sandbox")


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to one candidate in the sandbox."""

    valid: bool
    stage: str | None  # None when valid, else "execution", "trace" or "gradient_tests"
    error: str | None
    fingerprint: str | None = None
    canonical_form: str | None = None
    graph: dict[str, Any] | None = None  # the traced graph (sandbox.graph format) whenever tracing succeeded
    output: str = ""  # the start of what the candidate printed
    details: dict[str, Any] = field(default_factory=dict)  # probe facts (SandboxPool.probe only)
    isolation_missing: tuple[str, ...] = ()  # isolation properties the children did not get
    cpu_seconds: float = 0.0  # CPU time the zygote and its children spent on the request

    @classmethod
    def failure(cls, error: str, isolation_missing: tuple[str, ...] = ()) -> ExecutionResult:
        return cls(valid=False, stage="execution", error=error, isolation_missing=isolation_missing)


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
        self.probe: dict[str, Any] = {}

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
        with open(os.path.join(self._home, "zygote.log"), "wb") as zygote_log:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=zygote_log,
                env=scrubbed_env(self._home),
                cwd=self._home,
                start_new_session=True,
            )
        hello = self._read_reply(time.monotonic() + START_TIMEOUT_S)
        if not hello.get("ready"):
            self.close()
            raise ZygoteError(f"unexpected zygote greeting: {hello!r}")
        self.isolation = {name: bool(hello["isolation"].get(name)) for name in PROPERTIES}
        self.probe = dict(hello.get("probe") or {})
        missing = [name for name, obtained in self.isolation.items() if not obtained]
        if missing:
            log.warning(
                "sandbox children run WITHOUT %s on this machine (not root and no user namespaces, or an "
                "unsupported kernel): validation is weaker than designed",
                ", ".join(missing),
            )

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
        """Which isolation properties (`sandbox.isolation.PROPERTIES`) a probed child had; all False until a
        zygote has started."""
        zygote = next((z for z in self._zygotes if z.isolation), None)
        return dict(zygote.isolation) if zygote else dict.fromkeys(PROPERTIES, False)

    @property
    def isolation_missing(self) -> tuple[str, ...]:
        """The isolation properties the children do not have on this machine (recorded with every result)."""
        return tuple(name for name, obtained in self.isolation.items() if not obtained)

    @property
    def zygote_pids(self) -> list[int]:
        return [z.pid for z in self._zygotes if z.pid is not None]

    def execute(self, source: str, entry: str = "loss_fn", contract: str = "sequence") -> ExecutionResult:
        """Trace policy-checked source in one child (restricted globals), test its graph in another."""
        return self._run({"mode": "validate", "source": source, "entry": entry, "contract": contract}, 2)

    def trace(self, source: str, entry: str = "loss_fn", contract: str = "sequence") -> ExecutionResult:
        """Only trace policy-checked source: `graph` is set when it traced (no gradient tests)."""
        return self._run({"mode": "trace", "source": source, "entry": entry, "contract": contract}, 1)

    def run_unchecked(self, source: str, entry: str = "loss_fn") -> ExecutionResult:
        """Trace and test source with full builtins and no policy check: only for tests of the sandbox's own
        defences."""
        return self._run({"mode": "unchecked", "source": source, "entry": entry}, 2)

    def probe(self) -> dict[str, Any]:
        """What a sandbox child sees of its confinement and what it may do (see `sandbox.child.probe`)."""
        return self._run({"mode": "probe"}, 1).details

    def _run(self, message: dict[str, Any], children: int) -> ExecutionResult:
        zygote = self._idle.get()
        try:
            if not zygote.alive:
                zygote.start()
            wait_s = children * self.limits.timeout_s + REPLY_GRACE_S
            reply = zygote.request({**message, "limits": self.limits.to_json()}, wait_s)
        except (ZygoteError, OSError) as exc:
            log.warning("sandbox zygote failed (%s); restarting it", exc)
            zygote.close()
            return ExecutionResult.failure(
                "the sandbox worker failed and will be restarted", self.isolation_missing
            )
        finally:
            self._idle.put(zygote)
        graph = reply.get("graph")
        return ExecutionResult(
            valid=bool(reply.get("valid")),
            stage=reply.get("stage"),
            error=reply.get("error"),
            fingerprint=reply.get("fingerprint"),
            canonical_form=reply.get("canonical_form"),
            graph=graph if isinstance(graph, dict) else None,
            output=reply.get("output", ""),
            details=reply.get("details", {}),
            isolation_missing=tuple(n for n, ok in zygote.isolation.items() if not ok),
            cpu_seconds=float(reply.get("cpu_seconds") or 0.0),
        )
