"""The rules of the static policy (`sandbox.policy.check_policy` is the entry point).

Module level: imports of torch, torch.nn.functional and math, numeric constants (no annotations) and
function definitions. Inside functions: tensor math through allow-listed attributes (`sandbox.allowlist`),
no dunder or private (`_x`) names anywhere (bindings and import aliases included), no eval/exec/open/
getattr..., no string formatting that reaches attributes, no monkeypatching, no classes, try/with/raise/
global; constant default arguments only; no `out=`, no `inplace=True`, no item or slice assignment, and
augmented assignment only on names that can never alias an input (`sandbox.aliasing`).
"""

from __future__ import annotations

import ast

from sandbox.aliasing import fresh_names
from sandbox.allowlist import (
    EXPRESSION_NODES,
    FORBIDDEN_NAMES,
    FUNCTION_STATEMENTS,
    IMPORTABLE_MODULES,
    MODULE_ATTRS,
    PREBOUND_MODULES,
    SAFE_BUILTINS,
    VALUE_ATTRS,
)
from sandbox.policy_names import (
    PolicyViolation,
    bound_names,
    constant_default,
    dotted,
    is_dunder,
    is_private,
    shown,
)

_CONSTANT_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


class Checker:
    def __init__(self, nodes: list[ast.AST]) -> None:
        self.violations: list[PolicyViolation] = []
        self.modules: dict[str, str] = dict(PREBOUND_MODULES)
        self.known = bound_names(nodes) | SAFE_BUILTINS | set(PREBOUND_MODULES)
        self.params: set[str] = set()
        self.constants: set[str] = set()  # module-level numeric constants
        self.fresh: list[frozenset[str]] = []  # per enclosing function: names that never alias an argument

    def add(self, line: int, rule: str, message: str) -> None:
        self.violations.append(PolicyViolation(line, rule, message))

    # ---- module level -------------------------------------------------------------------------------------
    def check_module(self, tree: ast.Module, entry: str) -> None:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                self.check_function(node)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                self.check_import(node)
            elif isinstance(node, ast.AnnAssign):
                self.add(
                    node.lineno,
                    "module-level",
                    "annotated module-level assignments are not allowed; write NAME = 0.1",
                )
            elif isinstance(node, ast.Assign):
                self.check_constant(node)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            else:
                self.add(
                    node.lineno,
                    "module-level",
                    f"'{type(node).__name__}' is not allowed at module level; "
                    "use only imports, numeric constants and function definitions",
                )
        if not any(isinstance(n, ast.FunctionDef) and n.name == entry for n in tree.body):
            self.add(1, "entry", f"define a top-level function named '{entry}'")

    def check_constant(self, node: ast.Assign) -> None:
        numeric = self._numeric_literal(node.value)
        for target in node.targets:
            if not isinstance(target, ast.Name):
                self.add(node.lineno, "module-level", "module-level assignments must bind plain names")
            else:
                self.check_binding(target.id, node.lineno)
                if numeric:
                    self.constants.add(target.id)
        if not numeric:
            self.add(
                node.lineno,
                "module-level",
                "module-level values must be numeric literals such as 0.05 or 1e-6",
            )

    def _numeric_literal(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return type(node.value) in (int, float, bool)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self._numeric_literal(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):  # one level, exponent <= 64
            exponent = self._plain_number(node.right)
            return self._plain_number(node.left) is not None and exponent is not None and abs(exponent) <= 64
        if isinstance(node, ast.BinOp) and isinstance(node.op, _CONSTANT_OPS):
            return self._numeric_literal(node.left) and self._numeric_literal(node.right)
        return False

    @staticmethod
    def _plain_number(node: ast.expr) -> float | None:
        """The value of `3`, `-2.5` or `+1e-6`; None for anything else."""
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign, node = (-1 if isinstance(node.op, ast.USub) else 1), node.operand
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return sign * node.value
        return None

    # ---- statements ---------------------------------------------------------------------------------------
    def check_function(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.add(node.lineno, "statement", "decorators are not allowed")
        self.check_binding(node.name, node.lineno)
        self.check_arguments(node.args, node.lineno)
        if node.returns is not None:
            self.check_expr(node.returns)
        self.fresh.append(fresh_names(node))
        for stmt in node.body:
            self.check_statement(stmt)
        self.fresh.pop()

    def check_arguments(self, args: ast.arguments, line: int) -> None:
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is None:
                continue
            self.check_binding(arg.arg, line)
            self.params.add(arg.arg)
            if arg.annotation is not None:
                self.check_expr(arg.annotation)
        for default in [*args.defaults, *args.kw_defaults]:
            if default is None:
                continue
            self.check_expr(default)
            if not constant_default(default, self.constants):
                self.add(
                    line,
                    "default",
                    "default values must be constants (numbers, strings, None): a list, dict, tensor or call "
                    "as a default would keep state between calls",
                )

    def check_statement(self, node: ast.stmt) -> None:
        if not isinstance(node, FUNCTION_STATEMENTS):
            self.add(
                node.lineno,
                "statement",
                f"'{type(node).__name__}' statements are not allowed "
                "(no classes, try/with/raise, global/nonlocal, del, async)",
            )
            return
        if isinstance(node, ast.FunctionDef):
            self.check_function(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.check_import(node)
        else:
            if isinstance(node, ast.AugAssign):
                self.check_augmented(node)
            for target in self._targets(node):
                self.check_target(target)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self.check_statement(child)
                elif isinstance(child, ast.expr):
                    self.check_expr(child)

    @staticmethod
    def _targets(node: ast.stmt) -> list[ast.expr]:
        if isinstance(node, ast.Assign):
            return node.targets
        if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For)):
            return [node.target]
        return []

    def check_augmented(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name) and self.fresh and target.id not in self.fresh[-1]:
            name = shown(target.id)
            self.add(
                node.lineno,
                "in-place",
                f"'{name} op= ...' would modify '{name}' in place, and it is (or may be a view of) an input; "
                f"write '{name} = {name} op ...'",
            )

    def check_target(self, target: ast.expr) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.check_target(element)
        elif isinstance(target, ast.Starred):
            self.check_target(target.value)
        elif isinstance(target, ast.Subscript):
            self.add(
                target.lineno,
                "in-place",
                "item and slice assignment modifies a tensor in place; build a new one (torch.where, torch.cat)",
            )

    def check_name_itself(self, name: str, line: int) -> bool:
        """Dunder, private and forbidden names, wherever they are bound or used; True when it is fine."""
        if is_dunder(name):
            self.add(line, "dunder", f"dunder name '{shown(name)}' is not allowed")
        elif is_private(name):
            self.add(line, "private", f"names starting with '_' are not allowed ('{shown(name)}')")
        elif name in FORBIDDEN_NAMES:
            self.add(line, "forbidden-name", f"'{name}' is not allowed: {FORBIDDEN_NAMES[name]}")
        else:
            return True
        return False

    def check_binding(self, name: str, line: int) -> None:
        if self.check_name_itself(name, line) and name in self.modules:
            self.add(line, "rebind-module", f"'{shown(name)}' names a module; do not rebind it")

    def check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        allowed = "only 'import torch', 'import torch.nn.functional as F' and 'import math' are allowed"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in IMPORTABLE_MODULES:
                    self.add(node.lineno, "import", f"import of '{shown(alias.name)}' refused: {allowed}")
                elif alias.asname is None:
                    self.bind_module(
                        alias.name.split(".")[0], "torch" if "." in alias.name else alias.name, node.lineno
                    )
                else:
                    self.bind_module(alias.asname, IMPORTABLE_MODULES[alias.name], node.lineno)
            return
        module = node.module or ""
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if node.level == 0 and full in IMPORTABLE_MODULES:
                self.bind_module(alias.asname or alias.name, IMPORTABLE_MODULES[full], node.lineno)
            elif (
                node.level == 0
                and module in IMPORTABLE_MODULES
                and alias.name in MODULE_ATTRS[IMPORTABLE_MODULES[module]]
            ):
                self.check_binding(alias.asname or alias.name, node.lineno)
            else:
                self.add(
                    node.lineno,
                    "import",
                    f"'from {shown(module)} import {shown(alias.name)}' refused: {allowed}",
                )

    def bind_module(self, name: str, kind: str, line: int) -> None:
        if not self.check_name_itself(name, line):
            return
        if self.modules.get(name, kind) != kind or name in self.params:
            self.add(line, "rebind-module", f"'{shown(name)}' is already bound to something else")
        self.modules[name] = kind

    # ---- expressions --------------------------------------------------------------------------------------
    def check_expr(self, node: ast.AST) -> None:
        if isinstance(node, ast.Attribute):
            self.check_attribute(node)
            return
        if not isinstance(node, EXPRESSION_NODES):
            self.add(getattr(node, "lineno", 1), "expression", f"'{type(node).__name__}' is not allowed")
            return
        if isinstance(node, ast.Name):
            self.check_name(node)
        elif isinstance(node, ast.JoinedStr):
            if any(
                isinstance(v, ast.FormattedValue) and not isinstance(v.value, ast.Constant)
                for v in node.values
            ):
                self.add(node.lineno, "string-format", "f-strings may only contain literals")
                return
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, (str, bytes))
        ):
            self.add(node.lineno, "string-format", "'%' string formatting is not allowed")
        elif isinstance(node, ast.Lambda):
            self.check_arguments(node.args, node.lineno)
            self.check_expr(node.body)
            return
        elif isinstance(node, ast.keyword) and node.arg is not None:
            self.check_keyword(node)
        for child in ast.iter_child_nodes(node):
            self.check_expr(child)

    def check_keyword(self, node: ast.keyword) -> None:
        line = node.value.lineno
        if is_dunder(node.arg) or is_private(node.arg):
            self.add(line, "dunder", f"keyword '{shown(node.arg)}' is not allowed")
        elif node.arg == "out":
            self.add(line, "in-place", "'out=' writes into an existing tensor; use the returned value")
        elif node.arg == "inplace" and not (
            isinstance(node.value, ast.Constant) and node.value.value is False
        ):
            self.add(line, "in-place", "'inplace=True' modifies the input; leave inplace at False")

    def check_name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            self.check_binding(node.id, node.lineno)
        elif self.check_name_itself(node.id, node.lineno) and node.id not in self.known:
            self.add(
                node.lineno,
                "unknown-name",
                f"name '{shown(node.id)}' is not defined; only torch, F (torch.nn."
                "functional), math, safe builtins and your own variables are available",
            )

    def check_attribute(self, node: ast.Attribute) -> None:
        line = node.lineno
        if node.attr.startswith("_"):
            self.add(
                line,
                "dunder",
                f"attribute '.{shown(node.attr)}' is not allowed (no private or dunder attributes)",
            )
            return
        if not isinstance(node.ctx, ast.Load):
            self.add(
                line,
                "assign-attribute",
                "assigning to attributes is not allowed (no monkeypatching torch or F)",
            )
            return
        chain = dotted(node)
        if chain is not None and chain[0] in self.modules:
            self.check_module_chain(self.modules[chain[0]], chain, line)
            return
        if node.attr in ("format", "format_map"):
            self.add(line, "string-format", "str.format is not allowed")
        elif node.attr not in VALUE_ATTRS:
            self.add(
                line,
                "attribute",
                f"attribute '.{shown(node.attr)}' is not allowed; use tensor math methods only "
                "(e.g. .exp(), .mean(), .clamp(), .float())",
            )
        self.check_expr(node.value)

    def check_module_chain(self, kind: str, chain: list[str], line: int) -> None:
        rest = chain[1:]
        if kind == "torch" and rest[:2] == ["nn", "functional"]:
            kind, rest = "F", rest[2:]
            if not rest:
                return
        if kind == "torch" and rest == ["nn"]:
            self.add(line, "attribute", "use torch.nn.functional (or F) directly; torch.nn is not available")
            return
        name = rest[0]
        if name.startswith("_"):
            self.add(
                line,
                "dunder",
                f"'{shown(chain[0])}.{shown(name)}' is not allowed (no private or dunder attributes)",
            )
        elif name not in MODULE_ATTRS[kind]:
            self.add(
                line,
                "attribute",
                f"'{shown('.'.join(chain[: len(chain) - len(rest) + 1]))}' is not allowed: "
                f"only tensor math from {kind} may be used",
            )
        for attr in rest[1:]:
            if attr.startswith("_") or attr not in VALUE_ATTRS:
                self.add(line, "attribute", f"attribute '.{shown(attr)}' is not allowed")
