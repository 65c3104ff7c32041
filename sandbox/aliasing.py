"""Which local names of a function certainly hold a new object (never an argument or a view of one).

Augmented assignment (`x += y`) on a tensor writes into it in place, so on an argument, or on a name that may
alias one (`y = x`, `y = x.view(-1)`, `y = x.float()`, `y = x[1:]`, `y = a or b`), it would change the
caller's tensor. The policy allows `name += ...` only for names every binding of which is a fresh value:
arithmetic, a comparison, a constant, a container display, or a call that always builds a new tensor.
"""

from __future__ import annotations

import ast

# Methods and functions that may return their input itself or a view of it.
VIEW_RESULTS = frozenset(
    "view view_as reshape flatten squeeze unsqueeze t T mT transpose expand expand_as broadcast_to detach "
    "contiguous to float double half bfloat16 long int bool type_as chunk values indices as_tensor "
    "narrow select split unbind movedim permute".split()
)
# Builtins whose result is new (numbers, or new tensors for abs/sum/pow/round of a tensor).
FRESH_BUILTINS = frozenset("abs sum float int len pow round bool".split())


def _callee_name(node: ast.expr) -> tuple[str | None, bool]:
    """(name called, whether it is a plain name rather than an attribute)."""
    if isinstance(node, ast.Attribute):
        return node.attr, False
    if isinstance(node, ast.Name):
        return node.id, True
    return None, False


def is_fresh(node: ast.expr) -> bool:
    """Whether evaluating `node` certainly yields a new object, never an existing tensor or a view of one."""
    if isinstance(node, (ast.Constant, ast.Compare, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.Lambda)):
        return True
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.BinOp)):
        return True
    if isinstance(node, ast.UnaryOp):
        return not isinstance(node.op, ast.UAdd)  # +x returns x itself
    if isinstance(node, ast.IfExp):
        return is_fresh(node.body) and is_fresh(node.orelse)
    if isinstance(node, ast.Call):
        name, plain = _callee_name(node.func)
        if name is None:
            return False
        if plain:
            return name in FRESH_BUILTINS
        return name not in VIEW_RESULTS
    return False


def _own_statements(function: ast.FunctionDef) -> list[ast.AST]:
    """Every node of the function's own scope (nested functions and lambdas excluded)."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def fresh_names(function: ast.FunctionDef) -> frozenset[str]:
    """Local names of `function` bound only by plain `name = <fresh value>` assignments (never a parameter)."""
    fresh: set[str] = set()
    tainted = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    assigned: set[int] = set()  # Name nodes bound by the assignments handled below
    nodes = _own_statements(function)
    for node in nodes:
        if isinstance(node, ast.Assign):
            value_fresh = is_fresh(node.value)
            for target in node.targets:
                names = [n for n in ast.walk(target) if isinstance(n, ast.Name)]
                assigned.update(id(n) for n in names)
                (fresh if value_fresh and isinstance(target, ast.Name) else tainted).update(
                    n.id for n in names
                )
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            assigned.add(id(node.target))
            (fresh if node.value is not None and is_fresh(node.value) else tainted).add(node.target.id)
        elif isinstance(node, ast.AugAssign):
            assigned.update(id(n) for n in ast.walk(node.target) if isinstance(n, ast.Name))
    for node in nodes:  # for-loop targets, walrus, comprehension variables, imports
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and id(node) not in assigned:
            tainted.add(node.id)
        elif isinstance(node, ast.alias):
            tainted.add(node.asname or node.name.split(".")[0])
    return frozenset(fresh - tainted)
