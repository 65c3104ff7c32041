"""Audit-hook defence in depth for sandbox children: runtime events candidate code may never cause.

`install_strict_hook()` refuses them for the rest of the child's life (audit hooks cannot be removed). The
boundary is the child's confinement (`sandbox.isolation`); this hook only makes most attempts fail early
with a clear category. Reading Python module files and listing directories stay allowed so torch's lazy
imports keep working; every other file open, every write, socket, process, signal, environment change,
ctypes call and gc traversal is refused.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

_REFUSED_PREFIXES = tuple(
    (
        "socket. subprocess. os.exec os.fork os.forkpty os.posix_spawn os.spawn os.system os.startfile "
        "os.kill os.killpg signal.pthread_kill os.putenv os.unsetenv os.remove os.rename os.rmdir os.mkdir "
        "os.chmod os.chown os.lchown os.chflags os.link os.symlink os.truncate os.utime shutil. ctypes. pty. "
        "fcntl. mmap. resource. sqlite3. urllib. http. ftplib. smtplib. poplib. imaplib. nntplib. telnetlib. "
        "webbrowser. gc.get_ pickle.find_class code.__new__ function.__new__ sys.remote_exec"
    ).split()
)
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pth")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class SandboxRefusal(PermissionError):
    """Raised inside candidate code when it attempts an operation the sandbox refuses."""


def refusal(event: str, args: tuple) -> str | None:
    """Why `event` is refused for candidate code, or None when it is allowed."""
    if event == "open":
        return _open_refusal(args)
    if event.startswith(_REFUSED_PREFIXES):
        return f"sandbox refused {event}: loss code may not touch files, processes, signals or the network"
    return None


def _open_refusal(args: tuple) -> str | None:
    path, mode, flags = (tuple(args) + (None, None, None))[:3]
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & _WRITE_FLAGS
    )
    if writing:
        return f"sandbox refused opening {path!r} for writing: loss code may not write files"
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if isinstance(path, str) and path.endswith(_MODULE_SUFFIXES):
        return None
    return f"sandbox refused opening {path!r}: loss code may not read files"


def _strict_hook(rules: Callable[[str, tuple], str | None]) -> Callable[[str, tuple], None]:
    def hook(event: str, args: tuple) -> None:
        reason = rules(event, args)
        if reason is not None:
            raise SandboxRefusal(reason)

    return hook


def install_strict_hook() -> None:
    """Refuse the events for the rest of this process (sandbox children only: it cannot be undone).

    The rules are bound now, so rebinding `sandbox.audit.refusal` later does not change the hook."""
    sys.addaudithook(_strict_hook(refusal))
