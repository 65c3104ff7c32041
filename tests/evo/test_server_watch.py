"""The launcher watches its llama.cpp server: killed mid-run, the server is restarted with a line in the terminal
and the LLM goes on answering; a server that cannot come back (its port taken) disables the LLM proposer with the
server's last log lines in the terminal and the archive, and the search goes on with the symbolic proposer."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from evo.archive import Archive

SERVER_LINE = re.compile(r"llama\.cpp at http://127\.0\.0\.1:(\d+)/v1 \(pid (\d+)\)")


def _take_port(port: int) -> socket.socket:
    """Listen on the dead server's port (once the kernel has released it), so that no restart can bind it."""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 10
    while True:
        try:
            blocker.bind(("127.0.0.1", port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    blocker.listen(1)
    return blocker


def _launch_and_kill_the_server(run_dir: Path, take_port: bool) -> tuple[int, str, int]:
    """Run the tiny search with the embedded server; SIGKILL the server as soon as it serves. The exit code, the
    terminal output and the killed pid."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "COLUMNS": "240"}
    command = [
        sys.executable,
        "-m",
        "evo.launch",
        "--preset",
        "tiny",
        "--generations",
        "1",
        "--population",
        "2",
        "--run-dir",
        str(run_dir),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, killed, blocker = [], None, None
    try:
        for line in proc.stdout:
            lines.append(line)
            found = SERVER_LINE.search(line)
            if found and killed is None:
                killed = int(found.group(2))
                os.kill(killed, signal.SIGKILL)
                if take_port:
                    blocker = _take_port(int(found.group(1)))
        code = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        if blocker is not None:
            blocker.close()
    assert killed is not None, "".join(lines)[-3000:]
    return code, "".join(lines), killed


def test_a_killed_server_is_restarted_and_the_llm_answers(tmp_path):
    run_dir = tmp_path / "run"
    code, output, killed = _launch_and_kill_the_server(run_dir, take_port=False)
    assert code == 0, output[-4000:]
    assert f"the llama.cpp server (pid {killed}) died with exit code -9; restarting it in 1s (1/3)" in output
    assert "llama.cpp server restarted (pid " in output
    archive = Archive(run_dir / "archive.sqlite")
    proposals = [c for c in archive.all() if c.proposer == "llm"]
    assert proposals and all(c.llm_tokens_out > 0 for c in proposals)  # the restarted server answered
    assert not any(c.metrics.get("llm_faults") for c in proposals)  # the death was seen before the request
    assert archive.note("disabled_proposers") is None
    assert "APIConnectionError" not in output


def test_a_server_that_cannot_come_back_disables_the_llm_and_the_search_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    code, output, killed = _launch_and_kill_the_server(run_dir, take_port=True)
    assert code == 0, output[-4000:]
    assert output.count("restarting it in") == 3  # bounded: three tries, with backoff 1s, 2s, 4s
    assert "the llm proposer is disabled: the llama.cpp server cannot serve" in output
    archive = Archive(run_dir / "archive.sqlite")
    reason = archive.note("disabled_proposers")["llm"]
    assert (
        f"(pid {killed}) died with exit code -9" in reason and "address already in use" in reason
    )  # its log
    assert "llm proposer disabled: the llama.cpp server cannot serve" in output.split("Discovered losses")[1]
    rows = archive.all()
    assert not [c for c in rows if c.proposer == "llm"]  # no unparseable rows for a dead server
    assert [(c.proposer, c.status) for c in rows] == [
        ("baseline", "done"),
        ("symbolic", "done"),
        ("symbolic", "done"),
    ]
