"""The llama.cpp server never outlives a launcher killed with SIGKILL (no orphaned server on resume)."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

CODE = """
import time
from evo.llama_server import LlamaServer, embedded_server_config
server = LlamaServer(embedded_server_config()).start()
print(server._process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split()[2] != "Z"


def test_server_dies_with_a_sigkilled_parent():
    parent = subprocess.Popen([sys.executable, "-c", CODE], stdout=subprocess.PIPE, text=True)
    server = int(parent.stdout.readline())
    assert _alive(server)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(server)
