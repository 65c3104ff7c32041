"""The zygote: a warm process (torch imported, kernels warmed up) that forks confined children.

Protocol on stdin/stdout, one JSON object per line. The zygote first answers `{"ready": true, "isolation":
{property: bool, ...}, "probe": {...}}` (the properties of `sandbox.isolation.PROPERTIES`, measured in a
real child). Then each request `{"mode", "source", "entry", "contract", "limits"}` gets one reply dict (keys
valid, stage, error, graph, fingerprint, canonical_form, output, details, cpu_seconds). Mode "validate" (or
"unchecked", full builtins, for the sandbox's own tests) forks a tracing child, the only process that runs
candidate code, then hands its graph to the checker (`sandbox.checker`: a long-lived confined child that runs
the gradient tests on graphs alone); "trace" stops after the first; "probe" reports what a child can see and
do. Every child is process 1 of its own PID namespace where the machine allows it. The zygote enforces the
wall clock, kills each child's process group and reaps strays.
It exits when its stdin closes. Started by `sandbox.executor.Zygote`; not an API for other modules.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import selectors
import signal
import sys
import time
from typing import Any

import torch

from sandbox.audit import install_strict_hook
from sandbox.checker import Checker
from sandbox.child import handle_request
from sandbox.isolation import (
    PROPERTIES,
    RESULT_FD,
    Limits,
    become_subreaper,
    confine_child,
    enter_namespaces,
    open_pid_namespace,
    prepare_pid_namespace,
    process_table,
)
from sandbox.warmup import warm_up

MAX_RESULT_BYTES = 1024 * 1024
KEPT_OUTPUT_CHARS = 2000


def _reap_strays(keep: int | None) -> None:
    """Kill and reap every remaining child of this process but `keep` (the checker): orphans of a candidate
    land here as subreaper where PID namespaces are not available (else they die with their namespace)."""
    while True:
        strays = [p.pid for p in process_table() if p.ppid == os.getpid() and p.pid != keep]
        if not strays:
            return
        for pid in strays:
            _kill(pid, group=False)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


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


def _failure(error: str) -> dict[str, Any]:
    return {"valid": False, "stage": "execution", "error": error}


def _collect(
    pid: int, out_r: int, res_r: int, limits: Limits, keep: int | None
) -> tuple[dict[str, Any], str]:
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
    _reap_strays(keep)
    reply = _parse_result(bytes(result)) if problem is None else None
    if reply is None:
        reply = _failure(problem or _describe_exit(status, limits))
    return reply, output[:KEPT_OUTPUT_CHARS].decode(errors="replace")


def _parse_result(data: bytes) -> dict[str, Any] | None:
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) and "valid" in reply else None


class _Forker:
    """Forks confined children, each (where allowed) the first process of a fresh PID namespace, and keeps the
    long-lived checker."""

    def __init__(self) -> None:
        self.own_pid_namespace = open_pid_namespace()
        self.checker = Checker(self.own_pid_namespace)

    def run(self, request: dict[str, Any], limits: Limits) -> tuple[dict[str, Any], str]:
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        prepare_pid_namespace(self.own_pid_namespace)
        pid = os.fork()
        if pid == 0:
            try:
                confine_child(limits, out_w, res_w)
                if request["mode"] != "probe":
                    install_strict_hook()  # the probe measures the OS-level confinement alone
                data = json.dumps(handle_request(request)).encode()
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
            return _collect(pid, out_r, res_r, limits, keep=self.checker.pid)
        finally:
            os.close(out_r)
            os.close(res_r)


def _cpu_seconds() -> float:
    """CPU time of this process and of its reaped children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def serve(forker: _Forker, request: dict[str, Any]) -> dict[str, Any]:
    """One request (probe, trace, or trace then check), with the CPU seconds it cost (zygote and children)."""
    started = _cpu_seconds()
    reply = _serve(forker, request)
    checker = float(reply.get("cpu_seconds") or 0.0)  # the checker is not reaped: it reports its own
    return {**reply, "cpu_seconds": round(_cpu_seconds() - started + checker, 4)}


def _serve(forker: _Forker, request: dict[str, Any]) -> dict[str, Any]:
    limits = Limits(**request["limits"])
    mode = request["mode"]
    if mode == "probe":
        reply, output = forker.run({"mode": "probe", "parent_pid": os.getppid()}, limits)
        return {**reply, "output": output}
    trace = {
        "mode": "trace",
        "source": request["source"],
        "entry": request["entry"],
        "contract": request.get("contract", "sequence"),
        "restricted": mode != "unchecked",
    }
    traced, output = forker.run(trace, limits)
    if not traced.get("valid") or mode == "trace":
        return {**traced, "output": output}
    checked = forker.checker.check(traced["graph"], limits)
    return {**checked, "graph": traced["graph"], "output": output}


def _properties(setup: dict[str, bool], facts: dict[str, Any], original: dict[str, str]) -> dict[str, bool]:
    """Which of PROPERTIES a probed child actually has."""
    if not facts:
        return dict.fromkeys(PROPERTIES, False)
    attempts = facts["attempts"]
    measured = {
        "unprivileged_uid": facts["uid"] != 0 and facts["euid"] != 0,
        "no_capabilities": facts["cap_eff"] == facts["cap_prm"] == facts["cap_bnd"] == 0,
        "no_new_privs": facts["no_new_privs"],
        "seccomp": facts["seccomp"] and attempts["socket"] is not None,
        "pid_namespace": facts["pid"] == 1 and facts["visible_pids"] == [1],
        "network_namespace": setup["network_namespace"] and facts["net_namespace"] != original["net"],
        "mount_namespace": setup["mount_namespace"] and attempts["mount"] == "EPERM",
        "read_only_filesystem": setup["read_only_filesystem"],
    }
    return {name: bool(measured[name]) for name in PROPERTIES}


def main() -> None:
    """Warm up, isolate, probe a child, announce readiness, then serve requests until stdin closes."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    warm_up()
    gc.collect()
    gc.freeze()  # children's collections then skip the zygote's objects: fewer copy-on-write page faults
    original = {"net": os.readlink("/proc/self/ns/net")}
    setup = enter_namespaces(os.getcwd())
    forker = _Forker()
    probed = serve(forker, {"mode": "probe", "limits": Limits().to_json()})
    facts = probed.get("details") or {}
    isolation = _properties(setup, facts, original)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    hello = {"ready": True, "isolation": isolation, "setup": {**setup, "subreaper": become_subreaper()}}
    stdout.write(json.dumps({**hello, "probe": facts}).encode() + b"\n")
    stdout.flush()
    for line in stdin:
        try:
            reply = serve(forker, json.loads(line))
        except Exception as exc:  # a broken request or an OS failure must not kill the zygote
            reply = {**_failure(f"sandbox error: {type(exc).__name__}"), "output": ""}
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()
    forker.checker.stop()
