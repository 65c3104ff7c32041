"""Static allow-list policy for candidate loss source: the first, cheapest and strictest sandbox stage.

`check_policy(source)` parses the source with `ast` and returns every rule it breaks as a `PolicyViolation`
(line, rule id, message for the LLM). An empty tuple means the source may be traced in the sandbox child.
The rules themselves are in `sandbox.policy_checker`.
"""

from __future__ import annotations

import ast

from sandbox.policy_checker import Checker
from sandbox.policy_names import PolicyViolation, shown

MAX_SOURCE_CHARS = 20_000
MAX_AST_NODES = 5_000
MAX_VIOLATIONS = 10

__all__ = ["MAX_SOURCE_CHARS", "PolicyViolation", "check_policy", "format_violations"]


def format_violations(violations: tuple[PolicyViolation, ...]) -> str:
    """One short text listing the violations, for an LLM to fix."""
    return "policy: " + "; ".join(str(v) for v in violations)


def check_policy(source: str, entry: str = "loss_fn") -> tuple[PolicyViolation, ...]:
    """Return the policy violations of `source` (empty when it may run in the sandbox)."""
    if len(source) > MAX_SOURCE_CHARS:
        return (
            PolicyViolation(
                1, "size", f"source has {len(source)} characters; the limit is {MAX_SOURCE_CHARS}"
            ),
        )
    try:
        tree = ast.parse(source)
        nodes = list(ast.walk(tree))
    except SyntaxError as exc:
        return (PolicyViolation(exc.lineno or 1, "syntax", f"syntax error: {shown(exc.msg)}"),)
    except (ValueError, RecursionError, MemoryError) as exc:
        return (PolicyViolation(1, "syntax", f"source cannot be parsed: {type(exc).__name__}"),)
    if len(nodes) > MAX_AST_NODES:
        return (
            PolicyViolation(1, "size", f"source has {len(nodes)} syntax nodes; the limit is {MAX_AST_NODES}"),
        )
    checker = Checker(nodes)
    try:
        checker.check_module(tree, entry)
    except RecursionError:
        checker.add(1, "size", "expressions are nested too deeply")
    return tuple(dict.fromkeys(checker.violations))[:MAX_VIOLATIONS]
