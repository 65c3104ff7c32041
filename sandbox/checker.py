"""The checker: one long-lived confined child of the zygote that tests graphs, so that a validation forks once.

It runs trusted code on data only (the gradient tests, fingerprint and canonical form of a graph, see
`sandbox.child.check_graph`); candidate code never runs in it. It is confined like every sandbox child
(`sandbox.isolation.confine_child`: unprivileged, no capabilities, seccomp, its own namespaces, memory limit)
and reads one graph per line on its stdin, answering one JSON line on fd 3. A check that runs past the wall
clock, or a checker that dies, is killed and replaced; so is a checker that has served `RECYCLE_AFTER` graphs
(RLIMIT_CPU counts its whole life, and a fresh fork of the warm zygote starts clean).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from dataclasses import replace
from typing import Any

from sandbox.audit import install_strict_hook
from sandbox.child import check_graph, reply
from sandbox.isolation import RESULT_FD, Limits, confine_child, prepare_pid_namespace

RECYCLE_AFTER = 50
MAX_REPLY_BYTES = 256 * 1024


class _CheckerFailed(Exception):
    pass


def _serve_checks() -> None:
    """The checker's loop (in the child): a graph per line in, a verdict per line out, until stdin closes."""
    requests, results = os.fdopen(0, "rb"), os.fdopen(RESULT_FD, "wb", buffering=0)
    install_strict_hook()  # after opening its pipes: the hook refuses every later open
    for line in requests:
        started = time.process_time()
        try:
            verdict = check_graph(json.loads(line))
        except BaseException:  # garbled input, or memory exhausted outside the tests: answer and go on
            verdict = reply(False, "execution", "the checker could not read the graph")
        verdict["cpu_seconds"] = round(time.process_time() - started, 4)
        results.write(json.dumps(verdict).encode() + b"\n")


class Checker:
    """Zygote side: starts the checker on first use and talks to it."""

    def __init__(self, own_pid_namespace: int | None) -> None:
        self.own_pid_namespace = own_pid_namespace
        self.pid: int | None = None
        self.served = 0
        self._requests = self._results = -1
        self._buffer = b""

    def check(self, graph: dict[str, Any], limits: Limits) -> dict[str, Any]:
        """The verdict on one graph (never raises for anything the graph does)."""
        if self.pid is not None and self.served >= RECYCLE_AFTER:
            self.stop()
        if self.pid is None:
            self._start(limits)
        deadline = time.monotonic() + limits.timeout_s
        try:
            self._send(json.dumps(graph).encode() + b"\n", deadline)
            verdict = self._receive(deadline)
        except _CheckerFailed as exc:
            self.stop()
            return reply(False, "execution", str(exc))
        self.served += 1
        return verdict

    def _start(self, limits: Limits) -> None:
        requests_r, requests_w = os.pipe()
        results_r, results_w = os.pipe()
        devnull = os.open(os.devnull, os.O_WRONLY)
        lifetime = replace(limits, cpu_s=limits.cpu_s * RECYCLE_AFTER)
        prepare_pid_namespace(self.own_pid_namespace)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(requests_w)
                os.close(results_r)
                confine_child(lifetime, devnull, results_w, input_fd=requests_r)
                _serve_checks()
            finally:
                os._exit(0)
        for fd in (requests_r, results_w, devnull):
            os.close(fd)
        self.pid, self.served, self._buffer = pid, 0, b""
        self._requests, self._results = requests_w, results_r

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._requests], [], remaining)[1]:
                raise _CheckerFailed("timeout: the checker did not take the graph")
            try:
                view = view[os.write(self._requests, view[:65536]) :]
            except OSError as exc:
                raise _CheckerFailed("the checker died") from exc

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._results], [], [], remaining)[0]:
                raise _CheckerFailed(
                    "timeout: the loss graph ran for too long on the test inputs and was killed (far too much work?)"
                )
            chunk = os.read(self._results, 65536)
            if not chunk:
                raise _CheckerFailed("the loss graph killed the checker (too much memory or CPU time?)")
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise _CheckerFailed("the checker returned an oversized result")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            verdict = json.loads(line)
        except ValueError:
            verdict = None
        if not isinstance(verdict, dict) or "valid" not in verdict:
            raise _CheckerFailed("the checker returned a garbled result")
        return verdict

    def stop(self) -> None:
        """Kill the checker (it is replaced on the next check)."""
        if self.pid is None:
            return
        for fd in (self._requests, self._results):
            os.close(fd)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # already reaped
        self.pid = None
