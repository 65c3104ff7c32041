"""What a sandbox child computes for one request; it runs inside a confined child process (see
`sandbox.isolation`) and nothing here isolates anything by itself.

`handle_request(request)` returns a JSON-serialisable dict and never raises. Modes:

- "trace": execute the candidate's module code (restricted globals; full builtins for "unchecked" requests,
  only for the sandbox's own tests) and trace its entry function into a graph. The only mode that runs
  candidate code.
- "check": rebuild the loss from a graph with the trusted interpreter and run the gradient tests, the
  fingerprint and the canonical form on it. No candidate code exists in this process.
- "probe": report what the child can see and do (uid, capabilities, namespaces, seccomp, limits).

Every error text comes from `sandbox.errors`: fixed categories, allow-listed names, line numbers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import socket
from collections.abc import Iterator
from typing import Any

from sandbox.contract import KL_ROLES, LENGTH_ROLES, get_contract
from sandbox.errors import bounded, describe_exception, describe_graph_error, describe_graph_failure
from sandbox.gradient_tests import LossCallError, run_gradient_tests
from sandbox.graph import GraphError, LossGraph
from sandbox.graph_decode import decode_graph
from sandbox.interpreter import GraphRuntimeError, build_loss
from sandbox.namespace import load_namespace
from sandbox.novelty import canonical_form, fingerprint
from sandbox.token_tests import run_token_tests
from sandbox.tracer import TraceRejected, trace_loss

CANONICAL_BUDGET_S = 2.0

WARMUP_SOURCE = """
import torch
import torch.nn.functional as F


def loss_fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    spread = logits.std() if logits.numel() > 1 else logits.sum() * 0
    return -F.logsigmoid(beta * logits) + 0.1 * torch.relu(1 - beta * logits) ** 2 + 0 * spread
"""


def reply(
    valid: bool,
    stage: str | None = None,
    error: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {"valid": valid, "stage": stage, "error": None if error is None else bounded(error), **fields}


def trace_candidate(source: str, entry: str, contract: str, restricted: bool) -> dict[str, Any]:
    """Load and trace the candidate: {"valid": True, "graph": {...}} or a failure at stage execution/trace."""
    try:
        namespace = load_namespace(source, restricted=restricted)
        function = namespace.get(entry)
        if not callable(function):
            return reply(False, "execution", f"'{entry}' is not defined as a function")
        graph = trace_loss(function, get_contract(contract))
    except TraceRejected as exc:
        return reply(False, "trace", str(exc))
    except BaseException as exc:  # anything the candidate raises, SystemExit and MemoryError included
        return reply(False, "execution", describe_exception(exc))
    return reply(True, graph=graph.to_json())


class _CanonicalTimeout(BaseException):
    """A BaseException, so that sympy's own `except Exception` clauses cannot swallow it."""


@contextlib.contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise _CanonicalTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)  # re-fires until cleared
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _timed_canonical_form(graph: LossGraph) -> str | None:
    try:
        with _time_budget(CANONICAL_BUDGET_S):
            return canonical_form(graph)
    except _CanonicalTimeout:
        return None


def check_graph(data: Any) -> dict[str, Any]:
    """Gradient tests, fingerprint and canonical form of the loss rebuilt from graph data."""
    try:
        graph = decode_graph(data)
    except GraphError as exc:
        return reply(False, "trace", describe_graph_error(exc))
    loss = build_loss(graph)
    bound = set(graph.inputs)
    try:
        if graph.contract == "token":
            report = run_token_tests(loss, kl=bool(bound & set(KL_ROLES)))
        else:
            report = run_gradient_tests(loss, lengths=bool(bound & set(LENGTH_ROLES)))
    except LossCallError as exc:
        cause = exc.cause
        text = (
            describe_graph_failure(cause)
            if isinstance(cause, GraphRuntimeError)
            else describe_exception(cause)
        )
        return reply(False, "execution", f"{text} {exc}")
    except BaseException as exc:  # MemoryError and the like while the graph ran
        return reply(False, "execution", describe_exception(exc))
    if not report.passed:
        return reply(False, "gradient_tests", report.message)
    try:
        key = fingerprint(loss, graph)
    except Exception:  # a loss that passed the tests may still fail on the grid; it is then unkeyed
        key = None
    return reply(True, fingerprint=key, canonical_form=_timed_canonical_form(graph))


# ---- probe --------------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _status_fields() -> dict[str, str]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _errno_of(result: int) -> str | None:
    return None if result == 0 else errno.errorcode.get(ctypes.get_errno(), "unknown")


def attempts(parent_pid: int) -> dict[str, Any]:
    """Try what a confined child must not be able to do; the error names (None: it succeeded).

    Each attempt is harmless where it succeeds: mounting a file system type that does not exist (EPERM when
    refused, ENODEV when permitted), unsharing or re-entering this child's own network namespace.
    """
    results: dict[str, Any] = {
        "mount": _errno_of(_libc.mount(b"none", b"/", b"evopo-no-such-fs", 0, None)),
        "unshare": _errno_of(_libc.unshare(CLONE_NEWNET)),
    }
    try:
        fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        results["setns"] = _errno_of(_libc.setns(fd, 0))
        os.close(fd)
    except OSError as exc:
        results["setns"] = errno.errorcode.get(exc.errno or 0, "unknown")
    try:
        os.kill(parent_pid, 0)
        results["signal_parent"] = None
    except OSError as exc:
        results["signal_parent"] = errno.errorcode.get(exc.errno or 0, "unknown")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        results["socket"] = None
    except OSError as exc:
        results["socket"] = errno.errorcode.get(exc.errno or 0, "unknown")
    try:
        os.close(os.open(os.path.join(os.getcwd(), ".probe-write"), os.O_CREAT | os.O_WRONLY, 0o600))
        results["write_cwd"] = None
    except OSError as exc:
        results["write_cwd"] = errno.errorcode.get(exc.errno or 0, "unknown")
    return results


def probe(parent_pid: int) -> dict[str, Any]:
    """Facts about this process's confinement, for `SandboxPool.probe` and the zygote's isolation report."""
    status = _status_fields()
    return {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "cap_eff": int(status["CapEff"], 16),
        "cap_prm": int(status["CapPrm"], 16),
        "cap_bnd": int(status["CapBnd"], 16),
        "no_new_privs": status.get("NoNewPrivs") == "1",
        "seccomp": status.get("Seccomp") == "2",
        "visible_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "env": sorted(os.environ),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "net_namespace": os.readlink("/proc/self/ns/net"),
        "rlimits": {
            name: resource.getrlimit(getattr(resource, name))
            for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_CORE")
        },
        "attempts": attempts(parent_pid),
    }


def handle_request(request: dict[str, Any]) -> dict[str, Any]:
    """Dispatch one request by mode: "trace", "check" or "probe" (see the module docstring)."""
    mode = request.get("mode")
    if mode == "trace":
        return trace_candidate(
            request["source"], request["entry"], request.get("contract", "sequence"), request["restricted"]
        )
    if mode == "check":
        return check_graph(request["graph"])
    if mode == "probe":
        return reply(True, details=probe(request["parent_pid"]))
    return reply(False, "execution", "unknown sandbox request")
