"""Attacks that pass the static policy (plain Python and tensor math) and must be stopped while running: in
the tracing child (Python that loops, allocates or recurses) or in the checking child (a graph that asks for
far too much memory)."""

import re

import pytest

from sandbox.validate import validate_source
from tests.security.attack_kit import loss_source

# (id, source, pattern the execution error must match)
ATTACKS = [
    # a graph too slow for the checker's wall clock: the checker is killed and replaced
    (
        "slow-graph",
        loss_source(
            "    y = x.detach().reshape(1, -1).expand(4096, -1)\n    for i in range(450):\n"
            "        y = (y * 1.0001).abs().sqrt().detach()\n"
            "    x = x + 0 * y.sum()\n"
        ),
        r"timeout: the loss graph ran for too long",
    ),
    ("infinite-loop", loss_source("    while True:\n        pass\n"), r"timeout|SIGXCPU"),
    ("loop-over-huge-range", loss_source("    y = sum(range(10 ** 13))\n"), r"timeout|SIGXCPU"),
    ("memory-bomb-list", loss_source("    junk = [x] * 10 ** 10\n"), r"MemoryError"),
    (
        "memory-bomb-tensor",
        loss_source("    junk = torch.zeros_like(x).expand(10 ** 9, 16).contiguous()\n"),
        r"asks for more than \d+ elements \(a memory bomb\?\)",
    ),
    ("integer-bomb", loss_source("    junk = pow(7, 10 ** 10)\n"), r"timeout|SIGXCPU|MemoryError"),
    (
        "recursion-bomb",
        loss_source("    spin(0)\n", header="def spin(n):\n    return spin(n + 1)\n"),
        r"RecursionError",
    ),
    (
        "quadratic-blowup",
        loss_source("    y = torch.outer(x, x).expand(10 ** 6, 16, 16).sum()\n"),
        r"asks for more than \d+ elements \(a memory bomb\?\)",
    ),
]


@pytest.mark.parametrize(("source", "pattern"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_execution_stops(attack_pool, source, pattern):
    result = validate_source(source, pool=attack_pool)
    assert not result.valid
    assert result.stage == "execution"
    assert re.search(pattern, result.error), result.error


def test_the_pool_still_validates_after_the_attacks(attack_pool):
    result = validate_source(loss_source(), pool=attack_pool)
    assert result.valid, result.error
