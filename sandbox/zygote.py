"""The zygote: a warm process (torch imported, kernels warmed up) that forks one confined child per candidate.

Protocol on stdin/stdout, one JSON object per line. The zygote first answers `{"ready": true, "isolation":
{...}}`; then each request `{"mode", "source", "entry", "limits"}` gets one reply with the child's result dict
(keys valid, stage, error, fingerprint, canonical_form) plus "output" (the child's captured stdout/stderr).
The zygote enforces the wall-clock limit, kills the child's whole process group and reaps any stray process.
It exits when its stdin closes. Started by `sandbox.executor.Zygote`; not an API for other modules.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time
from typing import Any

import torch

from sandbox.isolation import (
    RESULT_FD,
    Limits,
    become_subreaper,
    confine_child,
    enter_namespaces,
    process_table,
)
from sandbox.job import WARMUP_SOURCE, run_job

MAX_RESULT_BYTES = 256 * 1024
KEPT_OUTPUT_CHARS = 2000


def _reap_strays() -> None:
    """Kill and reap every remaining child of this process (orphans of a candidate land here as subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            for process in process_table():
                if process.ppid == os.getpid():
                    _kill(process.pid, group=False)
            time.sleep(0.01)


def _kill(pid: int, group: bool) -> None:
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exited_before(pid: int, deadline: float) -> bool:
    """Poll for the child's exit (it normally follows its result at once) without reaping it."""
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.001)
    return False


def _describe_exit(status: int, limits: Limits) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return (
                f"killed by {signal.Signals(sig).name}: the loss code used more than {limits.cpu_s} s of CPU "
                "time or too much memory"
            )
        return f"the loss code crashed the sandbox child ({signal.Signals(sig).name})"
    return f"the sandbox child exited with code {os.WEXITSTATUS(status)} without a result"


def _collect(pid: int, out_r: int, res_r: int, limits: Limits) -> dict[str, Any]:
    """Read the child's output and result until both pipes close or a limit is hit; then kill and reap it."""
    deadline = time.monotonic() + limits.timeout_s
    output, result, problem = bytearray(), bytearray(), None
    selector = selectors.DefaultSelector()
    selector.register(out_r, selectors.EVENT_READ, output)
    selector.register(res_r, selectors.EVENT_READ, result)
    while selector.get_map() and problem is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            problem = (
                f"timeout: the loss code ran for more than {limits.timeout_s:g} s and was killed "
                "(an endless loop, or far too much work?)"
            )
            break
        for key, _ in selector.select(remaining):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                continue
            key.data.extend(chunk)
            if len(output) > limits.output_bytes:
                problem = f"output limit: the loss code printed more than {limits.output_bytes} bytes"
            elif len(result) > MAX_RESULT_BYTES:
                problem = "the sandbox child returned an oversized result"
    selector.close()
    if problem is None and not _exited_before(pid, deadline):
        problem = f"timeout: the sandbox child did not exit within {limits.timeout_s:g} s and was killed"
    _kill(pid, group=True)
    _, status = os.waitpid(pid, 0)
    _reap_strays()
    reply = _parse_result(bytes(result)) if problem is None else None
    if reply is None:
        error = problem or _describe_exit(status, limits)
        reply = {
            "valid": False,
            "stage": "execution",
            "error": error,
            "fingerprint": None,
            "canonical_form": None,
        }
    reply["output"] = output[:KEPT_OUTPUT_CHARS].decode(errors="replace")
    return reply


def _parse_result(data: bytes) -> dict[str, Any] | None:
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) and "valid" in reply else None


def _fork_child(request: dict[str, Any]) -> dict[str, Any]:
    limits = Limits(**request["limits"])
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            confine_child(limits, out_w, res_w)
            data = json.dumps(run_job(request)).encode()
            sys.stdout.flush()
            sys.stderr.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(RESULT_FD, view) :]
        finally:
            os._exit(0)
    os.close(out_w)
    os.close(res_w)
    try:
        os.setpgid(pid, pid)
    except (PermissionError, ProcessLookupError):
        pass
    try:
        return _collect(pid, out_r, res_r, limits)
    finally:
        os.close(out_r)
        os.close(res_r)


def _send(stream: Any, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def main() -> None:
    """Warm up, isolate, announce readiness, then serve requests until stdin closes."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    run_job({"mode": "validate", "source": WARMUP_SOURCE, "entry": "loss_fn"})
    isolation = enter_namespaces(os.getcwd())
    isolation["subreaper"] = become_subreaper()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _send(stdout, {"ready": True, "isolation": isolation})
    for line in stdin:
        try:
            reply = _fork_child(json.loads(line))
        except Exception as exc:  # a broken request or an OS failure must not kill the zygote
            reply = {
                "valid": False,
                "stage": "execution",
                "error": f"sandbox error: {exc!r}",
                "fingerprint": None,
                "canonical_form": None,
                "output": "",
            }
        _send(stdout, reply)
