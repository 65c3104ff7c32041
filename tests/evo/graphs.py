"""Graphs for archive rows and jobs in the evo tests, made the way the search makes them: in a sandbox child."""

from __future__ import annotations

import json

from sandbox.executor import SandboxPool
from sandbox.policy import check_policy
from sandbox.validate import validate_source


def validated_graph(source: str, pool: SandboxPool, entry: str | None = None) -> str:
    """The JSON text of the graph of source that passes validation (as the search stores it)."""
    result = validate_source(source, entry=entry, pool=pool)
    assert result.valid, f"[{result.stage}] {result.error}"
    return json.dumps(result.graph)


def traced_graph(source: str, pool: SandboxPool) -> str:
    """The JSON text of the graph of policy-clean source, traced without the gradient tests (for losses the tests
    would refuse, which a test wants to reach the trainer anyway)."""
    assert not check_policy(source), check_policy(source)
    result = pool.trace(source)
    assert result.graph is not None, f"[{result.stage}] {result.error}"
    return json.dumps(result.graph)
