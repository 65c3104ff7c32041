"""A seccomp-BPF filter for sandbox children, assembled here and installed with prctl through ctypes.

Refused with EPERM: changing mounts or namespaces (mount, umount2, pivot_root, chroot, setns, unshare, the
new mount API), starting programs or processes (execve, execveat, fork, vfork, clone without CLONE_THREAD),
looking into or controlling other processes (ptrace, process_vm_*, kcmp, pidfd_getfd), the kernel's
dangerous interfaces (bpf, perf_event_open, userfaultfd, io_uring, kexec, modules, keyrings, handles,
syslog, reboot, swap, clocks, accounting, quotas, raw I/O ports) and every socket. clone3 answers ENOSYS, so
the C library falls back to clone, whose flags the filter can inspect. Syscalls of another ABI (x32, or any
architecture but the native one) are refused as well. Supported: x86_64 and aarch64; elsewhere
`install_filter` returns False and the sandbox reports seccomp as missing.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_NR_OFFSET, _ARCH_OFFSET, _ARG0_OFFSET = 0, 4, 16

_REFUSED = (
    "mount umount2 pivot_root chroot setns unshare open_tree move_mount fsopen fsconfig fsmount fspick "
    "mount_setattr execve execveat fork vfork ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd "
    "bpf perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register kexec_load "
    "kexec_file_load init_module finit_module delete_module keyctl add_key request_key "
    "name_to_handle_at open_by_handle_at lookup_dcookie fanotify_init syslog reboot swapon swapoff "
    "settimeofday clock_settime clock_adjtime adjtimex acct quotactl iopl ioperm modify_ldt uselib "
    "personality vhangup socket socketpair"
).split()

# (audit arch, syscall numbers) per machine; names missing on an architecture (fork on aarch64) are skipped.
_X86_64 = {
    "socket": 41, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "ptrace": 101,
    "syslog": 103, "uselib": 134, "personality": 135, "vhangup": 153, "modify_ldt": 154, "pivot_root": 155,
    "adjtimex": 159, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "execveat": 322, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435, "pidfd_getfd": 438,
    "mount_setattr": 442,
}  # fmt: skip
_AARCH64 = {
    "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89,
    "personality": 92, "unshare": 97, "kexec_load": 104, "init_module": 105, "delete_module": 106,
    "clock_settime": 112, "syslog": 116, "ptrace": 117, "reboot": 142, "settimeofday": 170, "adjtimex": 171,
    "socket": 198, "socketpair": 199, "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220,
    "execve": 221, "swapon": 224, "swapoff": 225, "perf_event_open": 241, "name_to_handle_at": 264,
    "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270,
    "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "bpf": 280, "execveat": 281,
    "userfaultfd": 282, "kexec_file_load": 294, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "clone3": 435, "pidfd_getfd": 438, "mount_setattr": 442,
}  # fmt: skip
ARCHITECTURES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, _X86_64),
    "aarch64": (0xC00000B7, _AARCH64),
}


def _statement(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def build_filter(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter program (code, jt, jf, k) for a machine (raises KeyError when unsupported)."""
    arch, numbers = ARCHITECTURES[machine]
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    refused = [numbers[name] for name in _REFUSED if name in numbers and name != "clone3"]
    program = [
        _statement(_LD_W_ABS, _ARCH_OFFSET),
        _statement(_JEQ, arch, jt=1),  # native ABI: continue; anything else: refuse
        _statement(_RET, deny),
        _statement(_LD_W_ABS, _NR_OFFSET),
    ]
    if machine == "x86_64":
        program.append(_statement(_JGE, X32_SYSCALL_BIT, jt=len(refused) + 5))  # -> deny
    # after the checks: [clone check (4 instructions)] [allow] [deny]
    for position, number in enumerate(refused):
        program.append(_statement(_JEQ, number, jt=len(refused) - position + 4))  # -> deny
    program += [
        _statement(_JEQ, numbers["clone3"], jt=5),  # -> ENOSYS
        _statement(_JEQ, numbers["clone"], jf=2),  # not clone: allow
        _statement(_LD_W_ABS, _ARG0_OFFSET),
        _statement(_JSET, CLONE_THREAD, jf=1),  # a thread: allow; a process: deny
        _statement(_RET, SECCOMP_RET_ALLOW),
        _statement(_RET, deny),
        _statement(_RET, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    return program


def install_filter() -> bool:
    """Set no_new_privs and install the filter on this (single-threaded) process; False when unsupported."""
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        return False
    program = build_filter(machine)
    blob = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(blob, len(blob))

    class _Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Program(len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
