"""What candidate loss source may write and use: tensor math only, nothing reaching files, processes, network.

Attribute access is checked against these sets by `sandbox.policy` (the first, static gate);
`sandbox.namespace` builds the tracing child's restricted globals from them. The operation names come from
`sandbox.ops`, the table the traced graph is checked against, so what the policy lets through can be traced.
Anything not listed here is refused, so adding a name is a security decision.
"""

from __future__ import annotations

import ast

from sandbox.ops import ATTRIBUTES, F_FUNCTIONS, MATH_FUNCTIONS, TENSOR_METHODS, TORCH_FUNCTIONS


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _nodes(text: str) -> tuple[type[ast.AST], ...]:
    return tuple(getattr(ast, name) for name in text.split())


# Statements allowed inside functions (module level allows only imports, numeric constants and functions).
FUNCTION_STATEMENTS = _nodes(
    "FunctionDef Return Assign AugAssign AnnAssign If For While Break Continue Pass Expr Assert Import "
    "ImportFrom"
)
# Expression nodes and their helper nodes; no await/yield.
EXPRESSION_NODES = _nodes(
    "BoolOp NamedExpr BinOp UnaryOp Lambda IfExp ListComp SetComp DictComp GeneratorExp Compare Call "
    "Constant Attribute Subscript Starred Name List Tuple Slice Dict Set JoinedStr FormattedValue "
    "expr_context operator unaryop cmpop boolop arguments arg keyword comprehension alias"
)


# Modules a candidate may import, and the alias kind each binds.
IMPORTABLE_MODULES: dict[str, str] = {"torch": "torch", "math": "math", "torch.nn.functional": "F"}

# Names bound in every candidate's globals without an import.
PREBOUND_MODULES: dict[str, str] = {"torch": "torch", "F": "F", "math": "math"}

# torch.<name>: the graph's torch operations, plus what only builds constants while tracing (tensors from
# numbers, finfo of a dtype named in the code), dtypes and numeric constants.
TORCH_ATTRS: frozenset[str] = frozenset(TORCH_FUNCTIONS) | _names(
    "tensor as_tensor scalar_tensor finfo pi e inf nan float32 float64 float16 bfloat16 float double half "
    "int64 int32 long int bool"
)

# F.<name> (torch.nn.functional): activations and element-wise losses.
F_ATTRS: frozenset[str] = frozenset(F_FUNCTIONS)

# math.<name>: float functions and constants (nothing with unbounded integer cost such as factorial).
MATH_ATTRS: frozenset[str] = frozenset(MATH_FUNCTIONS) | _names("e inf nan pi tau")

MODULE_ATTRS: dict[str, frozenset[str]] = {"torch": TORCH_ATTRS, "F": F_ATTRS, "math": MATH_ATTRS}

# <value>.<name> on anything that is not a module: the graph's tensor methods and attributes, torch.finfo
# fields and list.append (for lists built inside the loss).
VALUE_ATTRS: frozenset[str] = (
    TENSOR_METHODS | ATTRIBUTES | _names("eps tiny resolution smallest_normal max min append")
)

# Builtins available to candidate code.
SAFE_BUILTINS: frozenset[str] = _names(
    "abs all any bool divmod enumerate filter float int isinstance len list map max min pow range reversed "
    "round sorted sum tuple zip True False None"
)

# Names refused outright, with the reason the LLM is told.
FORBIDDEN_NAMES: dict[str, str] = {
    **dict.fromkeys(
        "exec eval compile getattr setattr delattr hasattr globals locals vars dir type object super "
        "classmethod "
        "staticmethod property breakpoint memoryview callable issubclass id help".split(),
        "it can run or reach arbitrary code",
    ),
    "open": "file access is not allowed",
    "input": "reading input is not allowed",
    "print": "printing is not allowed; return the loss instead",
    "exit": "exiting is not allowed",
    "quit": "exiting is not allowed",
    "format": "string formatting is not allowed",
}
