"""The seccomp filter program: well-formed for every supported machine (what it refuses is measured in a real
child by tests/security/test_child_privileges.py)."""

import pytest

from sandbox.seccomp import ARCHITECTURES, SECCOMP_RET_ALLOW, build_filter

_RET, _JUMPS = 0x06, (0x15, 0x35, 0x45)


@pytest.mark.parametrize("machine", sorted(ARCHITECTURES))
def test_every_jump_lands_inside_the_program(machine):
    program = build_filter(machine)
    assert len(program) < 256
    for index, (code, jt, jf, _) in enumerate(program):
        if code in _JUMPS:
            assert index + 1 + max(jt, jf) < len(program)
    assert program[-1][0] == program[-2][0] == program[-3][0] == _RET
    assert SECCOMP_RET_ALLOW in [k for code, _, _, k in program if code == _RET]


@pytest.mark.parametrize("machine", sorted(ARCHITECTURES))
def test_refused_syscalls_jump_to_the_refusal(machine):
    program = build_filter(machine)
    deny = len(program) - 2
    _, numbers = ARCHITECTURES[machine]
    for name in ("mount", "setns", "unshare", "ptrace", "bpf", "socket", "execve", "kexec_load"):
        index = next(i for i, (code, _, _, k) in enumerate(program) if code == 0x15 and k == numbers[name])
        assert index + 1 + program[index][1] == deny, name
