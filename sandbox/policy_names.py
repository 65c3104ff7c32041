"""Small AST facts the policy rules are written with: the violation record, bound names, dotted chains, dunder
and private names, constant default arguments, and how a name from the source is shown in a message."""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyViolation:
    """One broken rule: where, which rule, and what to change."""

    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


def bound_names(nodes: list[ast.AST]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names


def dotted(node: ast.expr) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None when the chain does not start at a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def is_private(name: str) -> bool:
    return name.startswith("_") and name != "_"


def shown(name: str) -> str:
    """A name from the source, bounded (messages never carry more of the candidate's text)."""
    return name if len(name) <= 40 else name[:37] + "..."


def constant_default(node: ast.expr, constants: set[str]) -> bool:
    """Numbers, strings, None, tuples of those, and names of module-level numeric constants."""
    if isinstance(node, ast.Constant):
        return node.value is None or type(node.value) in (int, float, bool, str)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    if isinstance(node, ast.Tuple):
        return all(constant_default(e, constants) for e in node.elts)
    return isinstance(node, ast.Name) and node.id in constants
