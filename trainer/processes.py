"""Small helpers for the child processes the project starts (a llama.cpp server)."""

from __future__ import annotations

import ctypes
import signal
import socket

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """A ``preexec_fn``: in the child before exec, ask Linux to SIGTERM it when the process that started it dies,
    even by SIGKILL (a Ray task cancelled on its timeout), so that no orphan keeps a port or the GPUs."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
