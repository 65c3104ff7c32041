"""The pool: results instead of exceptions, restart after a zygote dies, sharing between threads."""

import os
import signal
import threading
import time

from sandbox.executor import SandboxPool, Zygote, session_processes
from sandbox.isolation import PROPERTIES, Limits
from tests.sandbox.discopop_losses import ALL_LOSSES
from tests.security.attack_kit import at_rest


def test_a_dead_zygote_is_replaced():
    with SandboxPool(limits=Limits(timeout_s=5.0)) as pool:
        idle = pool.zygote_pids[0]
        os.kill(idle, signal.SIGKILL)
        time.sleep(0.2)
        assert pool.execute(ALL_LOSSES["sigmoid"]).valid  # found dead before use: restarted transparently
        busy = pool.zygote_pids[0]
        assert busy != idle
        threading.Timer(1.0, os.kill, (busy, signal.SIGKILL)).start()
        broken = pool.run_unchecked("import time\ntime.sleep(3)\n" + ALL_LOSSES["sigmoid"])
        assert not broken.valid and broken.stage == "execution"
        assert "sandbox worker failed and will be restarted" in broken.error
        healed = pool.execute(ALL_LOSSES["sigmoid"])
        assert healed.valid, healed.error
        assert pool.zygote_pids[0] not in (idle, busy)
        assert session_processes(idle) == [] and session_processes(busy) == []


def test_close_leaves_no_process_and_the_pool_starts_again_on_use():
    pool = SandboxPool()
    assert pool.zygote_pids == []  # not started yet: the first request starts it
    assert pool.execute(ALL_LOSSES["ipo"]).valid
    pid = pool.zygote_pids[0]
    assert at_rest(pid) and len(session_processes(pid)) == 2  # the zygote and its checker
    pool.close()
    assert session_processes(pid) == [] and pool.zygote_pids == []
    assert pool.execute(ALL_LOSSES["ipo"]).valid
    pool.close()


def test_threads_share_one_pool(sandbox_pool):
    results = []
    names = ["sigmoid", "hinge", "ipo", "cell"]
    workers = [
        threading.Thread(target=lambda n=n: results.append(sandbox_pool.execute(ALL_LOSSES[n])))
        for n in names
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 4 and all(r.valid for r in results)
    assert len({r.fingerprint for r in results}) == 4


def test_isolation_report(sandbox_pool):
    assert set(sandbox_pool.isolation) == set(PROPERTIES)
    assert sandbox_pool.execute(ALL_LOSSES["sigmoid"]).isolation_missing == sandbox_pool.isolation_missing


def test_a_trace_only_request_returns_the_graph_untested(sandbox_pool):
    result = sandbox_pool.trace(
        "def loss_fn(a, b, c, d, beta):\n    return beta * (a - b)\n"
    )  # wrong direction
    assert result.valid and result.graph is not None and result.fingerprint is None


def test_printed_output_is_captured(sandbox_pool):
    source = ALL_LOSSES["sigmoid"] + "\nPRINTED = 1\n"
    result = sandbox_pool.run_unchecked(
        source.replace("import torch.nn.functional as F", "print('hello from the child')")
    )
    assert result.valid and "hello from the child" in result.output


def test_missing_isolation_is_reported_loudly(monkeypatch, caplog):
    """A machine that cannot give the children a property: a warning when the zygote starts, and the gap on
    every result (here the zygote's greeting is replaced by one that reports no seccomp)."""
    hello = {"ready": True, "isolation": {**dict.fromkeys(PROPERTIES, True), "seccomp": False}, "probe": {}}
    monkeypatch.setattr(Zygote, "_read_reply", lambda self, deadline: hello)
    pool = SandboxPool()
    with caplog.at_level("WARNING", logger="sandbox"):
        pool.start()
    pool.close()
    assert "sandbox children run WITHOUT seccomp" in caplog.text
    assert pool.isolation_missing == ("seccomp",)
