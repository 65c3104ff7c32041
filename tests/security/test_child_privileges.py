"""The validating child runs unprivileged: not root, no capabilities, no_new_privs, seccomp, its own PID,
network and mount namespaces; `mount` and `setns` fail in it and it cannot see the parent's processes.

These are measured in a real child (`SandboxPool.probe`), after the same confinement every candidate gets,
without the audit hook (so the operating system, not Python, is what refuses). On a machine that cannot
provide a property the pool must say so (`isolation_missing`) instead of running weaker in silence.
"""

import os

import pytest

from sandbox.isolation import PROPERTIES
from tests.security.attack_kit import loss_source


@pytest.fixture(scope="module")
def facts(attack_pool):
    return attack_pool.probe()


def test_every_property_is_reported(attack_pool):
    assert set(attack_pool.isolation) == set(PROPERTIES)
    assert attack_pool.isolation_missing == tuple(n for n in PROPERTIES if not attack_pool.isolation[n])
    result = attack_pool.execute(loss_source())
    assert result.valid and result.isolation_missing == attack_pool.isolation_missing


def test_this_machine_gives_every_property(attack_pool):
    """Root (or user namespaces) on Linux: the suite's machines provide all of it; a gap is a failure here."""
    assert attack_pool.isolation_missing == ()


def test_the_child_is_not_root(facts):
    assert facts["uid"] != 0 and facts["euid"] != 0 and facts["gid"] != 0


def test_the_child_has_no_capabilities(facts):
    assert facts["cap_eff"] == 0  # CapEff in /proc/self/status
    assert facts["cap_prm"] == 0 and facts["cap_bnd"] == 0
    assert facts["no_new_privs"] and facts["seccomp"]


def test_mount_and_setns_fail(facts):
    attempts = facts["attempts"]
    assert attempts["mount"] == "EPERM"  # ENODEV would mean mounting was permitted
    assert attempts["setns"] == "EPERM"
    assert attempts["unshare"] == "EPERM"
    assert attempts["socket"] == "EPERM"
    assert attempts["write_cwd"] in ("EACCES", "EROFS")


def test_the_child_cannot_see_the_parent(facts):
    assert facts["pid"] == 1  # the first process of its own PID namespace
    assert facts["visible_pids"] == [1]
    assert facts["attempts"]["signal_parent"] == "ESRCH"  # the parent's pid names no process there


def test_the_child_has_its_own_network(facts):
    assert facts["net_namespace"] != os.readlink("/proc/self/ns/net")
