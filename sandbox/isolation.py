"""Operating-system isolation for sandbox processes (Linux).

Parent side: `scrubbed_env` (what the zygote inherits). Zygote side: `enter_namespaces` (as root: a new
network namespace and a mount namespace in which every file system is read-only; not root: the same inside a
new user namespace, where the kernel allows one) and `prepare_pid_namespace` (before each fork, so that every
child is process 1 of a fresh PID namespace). Child side: `confine_child`: own process group, only the pipes
it needs, death with its zygote, a fresh /proc of its own PID namespace, resource limits, then no privileges:
uid/gid `SANDBOX_UID` (or the user namespace's mapped uid), no capabilities (effective, permitted,
inheritable, ambient, bounding), no_new_privs, and the seccomp filter of `sandbox.seccomp`. The audit hook
(`sandbox.audit`) comes last, as defence in depth.

What the machine could not provide is never hidden: the zygote probes a real child and reports every
property of `PROPERTIES` (see `sandbox.executor.SandboxPool.isolation`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from dataclasses import asdict, dataclass

from sandbox.seccomp import PR_SET_NO_NEW_PRIVS, install_filter

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
RESULT_FD = 3
SANDBOX_UID = 65534  # "nobody": owns no file the sandbox could write
_KEPT_ENV = ("PATH", "LANG", "LC_ALL")
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Flags a read-only remount must keep (in a user namespace the kernel refuses to clear any of them).
_MOUNT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": 0x400,
    "nodiratime": 0x800,
    "relatime": 0x200000,
}

# Every property a validating child should have; the pool reports each as obtained or missing.
PROPERTIES = (
    "unprivileged_uid",
    "no_capabilities",
    "no_new_privs",
    "seccomp",
    "pid_namespace",
    "network_namespace",
    "mount_namespace",
    "read_only_filesystem",
)

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """Per-candidate resource limits."""

    timeout_s: float = 10.0  # wall clock per child; its whole process group is killed after it
    cpu_s: int = 10  # RLIMIT_CPU
    memory_mb: int = 2048  # RLIMIT_AS, on top of the zygote's own address space
    output_bytes: int = 64 * 1024  # stdout + stderr; the child is killed when it prints more
    processes: int = 1  # RLIMIT_NPROC (seccomp refuses new processes as well)

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def scrubbed_env(home: str) -> dict[str, str]:
    """The zygote's whole environment: no API keys or secrets, one torch thread, a private HOME."""
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.update(dict.fromkeys(_THREAD_ENV, "1"))
    env.update(HOME=home, TMPDIR=home)
    return env


def _ok(result: int) -> bool:
    return result == 0


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int) -> bool:
    return _ok(_libc.mount(source, target, fstype, flags, None))


def _mount_points() -> list[tuple[bytes, int]]:
    points = []
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            fields = line.split()
            path = fields[4].decode("unicode_escape").encode("latin-1")
            flags = sum(_MOUNT_FLAGS.get(opt, 0) for opt in fields[5].decode().split(","))
            points.append((path, flags))
    return points


def _private_mount_namespace() -> bool:
    return _ok(_libc.unshare(CLONE_NEWNS)) and _mount(None, b"/", None, MS_REC | MS_PRIVATE)


def _read_only_everywhere(probe_dir: str) -> bool:
    """Remount every mount point read-only (in the private mount namespace); True when a write is refused."""
    for path, flags in _mount_points():
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
    probe = os.path.join(probe_dir, ".write-probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        return exc.errno == errno.EROFS
    os.unlink(probe)
    return False


def _enter_user_namespace() -> bool:
    """Not root: a user namespace in which this process keeps capabilities, mapped to SANDBOX_UID."""
    uid, gid = os.getuid(), os.getgid()
    if not _ok(_libc.unshare(CLONE_NEWUSER)):
        return False
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{SANDBOX_UID} {uid} 1"),
            ("gid_map", f"{SANDBOX_UID} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    except OSError:
        return False
    return True


def enter_namespaces(probe_dir: str) -> dict[str, bool]:
    """Cut the network and make the file system read-only for this process and its children, where allowed."""
    user_namespace = os.geteuid() != 0 and _enter_user_namespace()
    network_namespace = _ok(_libc.unshare(CLONE_NEWNET))
    mount_namespace = _private_mount_namespace()
    return {
        "user_namespace": user_namespace,
        "network_namespace": network_namespace,
        "mount_namespace": mount_namespace,
        "read_only_filesystem": mount_namespace and _read_only_everywhere(probe_dir),
    }


def open_pid_namespace() -> int | None:
    """A descriptor of this process's own PID namespace, for `prepare_pid_namespace`."""
    try:
        return os.open("/proc/self/ns/pid", os.O_RDONLY)
    except OSError:
        return None


def prepare_pid_namespace(own_namespace: int | None) -> bool:
    """Make the next fork the first process of a fresh PID namespace (needs CAP_SYS_ADMIN here)."""
    if own_namespace is None:
        return False
    return _ok(_libc.setns(own_namespace, CLONE_NEWPID)) and _ok(_libc.unshare(CLONE_NEWPID))


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process, so it can kill any stray a child leaves."""
    return _ok(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))


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


def _address_space_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _own_proc() -> None:
    """A private mount namespace with a /proc of this process's PID namespace (shows only its own processes)."""
    if os.getpid() == 1 and _ok(_libc.unshare(CLONE_NEWNS)):
        _mount(None, b"/", None, MS_REC | MS_PRIVATE)
        _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_privileges() -> None:
    """No capabilities of any kind, uid/gid SANDBOX_UID when this process may switch (root or user ns)."""
    for capability in range(64):
        _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    try:
        os.setgroups([])
    except OSError:
        pass  # a user namespace with setgroups denied has no supplementary groups to drop
    try:
        os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    except OSError:
        pass  # not permitted here: the probe reports the uid that remains
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _libc.capset(ctypes.byref(header), data)


def confine_child(limits: Limits, output_fd: int, result_fd: int, input_fd: int | None = None) -> None:
    """Called in a freshly forked child before anything it was asked to run; irreversible. Its stdin is
    `input_fd` (default /dev/null), stdout and stderr `output_fd`, fd 3 `result_fd`; nothing else stays open."""
    os.setpgid(0, 0)
    os.dup2(os.open(os.devnull, os.O_RDONLY) if input_fd is None else input_fd, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.dup2(result_fd, RESULT_FD)
    os.closerange(RESULT_FD + 1, os.sysconf("SC_OPEN_MAX"))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _own_proc()
    memory = _address_space_bytes() + limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _drop_privileges()
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    install_filter()
