"""Operating-system isolation for sandbox processes (Linux).

Parent side: `scrubbed_env` (what the zygote inherits). Zygote side: `enter_namespaces` (a new network
namespace, and a mount namespace in which every file system is read-only, where the kernel allows them) and
`become_subreaper`. Child side: `confine_child` (own process group, only the pipes it needs, resource limits,
death with its zygote, then the strict audit hook).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from dataclasses import asdict, dataclass

from sandbox.audit import install_strict_hook

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RESULT_FD = 3
_KEPT_ENV = ("PATH", "LANG", "LC_ALL")
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """Per-candidate resource limits."""

    timeout_s: float = 10.0  # wall clock; the whole process group is killed after it
    cpu_s: int = 10  # RLIMIT_CPU
    memory_mb: int = 2048  # RLIMIT_AS, on top of the zygote's own address space
    output_bytes: int = 64 * 1024  # stdout + stderr; the child is killed when it prints more
    processes: int = 1  # RLIMIT_NPROC (not enforced by Linux for root, which the audit hook covers)

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def scrubbed_env(home: str) -> dict[str, str]:
    """The zygote's whole environment: no API keys or secrets, one torch thread, a private HOME."""
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.update(dict.fromkeys(_THREAD_ENV, "1"))
    env.update(HOME=home, TMPDIR=home)
    return env


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def _mount(target: bytes | None, flags: int) -> bool:
    return _libc.mount(None, target, None, flags, None) == 0


def _mount_points() -> list[tuple[bytes, int]]:
    points = []
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            fields = line.split()
            path = fields[4].decode("unicode_escape").encode("latin-1")
            flags = sum(_MOUNT_FLAGS.get(opt, 0) for opt in fields[5].decode().split(","))
            points.append((path, flags))
    return points


def _read_only_everywhere(probe_dir: str) -> bool:
    """Remount every mount point read-only in a private mount namespace; True when a write is then refused."""
    if not (_unshare(CLONE_NEWNS) and _mount(b"/", MS_REC | MS_PRIVATE)):
        return False
    for path, flags in _mount_points():
        _mount(path, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
    probe = os.path.join(probe_dir, ".write-probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        return exc.errno == errno.EROFS
    os.unlink(probe)
    return False


def enter_namespaces(probe_dir: str) -> dict[str, bool]:
    """Cut the network and make the file system read-only for this process and its children, where allowed."""
    return {
        "network_namespace": _unshare(CLONE_NEWNET),
        "read_only_filesystem": _read_only_everywhere(probe_dir),
    }


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    session: int
    state: str


def process_table() -> list[ProcessInfo]:
    """Every process visible in /proc (pid, parent, session, state)."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table.append(ProcessInfo(int(entry), int(fields[1]), int(fields[3]), fields[0].decode()))
    return table


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process, so it can kill any stray a child leaves."""
    return _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _address_space_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def confine_child(limits: Limits, output_fd: int, result_fd: int) -> None:
    """Called in a freshly forked child before any candidate code runs; irreversible."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.dup2(result_fd, RESULT_FD)
    os.closerange(RESULT_FD + 1, os.sysconf("SC_OPEN_MAX"))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    memory = _address_space_bytes() + limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    install_strict_hook()
