"""Decoding and validation of a loss graph's JSON (the format is described in `sandbox.graph`).

`decode_graph` refuses anything but that format with a `GraphError` naming the node: unknown ops or names, `out=`,
`inplace=True`, dtypes used other than as a dtype argument, forward references (so no cycles), oversized graphs.
It is the check every consumer runs on stored data: the parent on what the sandbox children send back, the
checker, the trusted interpreter."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from sandbox.contract import get_contract
from sandbox.graph import (
    FORMAT,
    MAX_CONSTANT_ELEMENTS,
    MAX_NODES,
    VERSION,
    GraphError,
    LossGraph,
    Node,
    Ref,
    TensorConstant,
    Variant,
)
from sandbox.ops import ATTRIBUTES, DTYPES, FUNCTIONS, STRINGS, TENSOR_METHODS

MAX_JSON_CHARS = 512 * 1024
MAX_SEQUENCE = 64
MAX_DEPTH = 6
MAX_INT = 2**53
NODE_OPS = ("call_function", "call_method", "getattr", "guard")
_KWARG = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def decode_graph(data: dict[str, Any] | str) -> LossGraph:
    """Decode and validate a graph (a dict or its JSON text); raises GraphError."""
    if isinstance(data, str):
        if len(data) > MAX_JSON_CHARS:
            raise GraphError(f"graph JSON has {len(data)} characters; the limit is {MAX_JSON_CHARS}")
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise GraphError(f"graph is not valid JSON ({exc.msg})") from None
    return _decode_graph(data)


def _require(condition: bool, message: str, node: int | None = None, line: int | None = None) -> None:
    if not condition:
        raise GraphError(message, node, line)


def _decode_graph(data: Any) -> LossGraph:
    _require(isinstance(data, dict), "a graph must be a JSON object")
    expected = {"format", "version", "contract", "inputs", "variants"}
    _require(set(data) == expected, f"a graph has exactly the keys {sorted(expected)}")
    _require(data["format"] == FORMAT and data["version"] == VERSION, f"not a {FORMAT} version {VERSION}")
    _require(isinstance(data["contract"], str), "contract must be a name")
    try:
        contract = get_contract(data["contract"])
    except KeyError as exc:
        raise GraphError(str(exc.args[0])) from None
    roles = data["inputs"]
    known = [spec.role for spec in contract.inputs]
    _require(
        isinstance(roles, list) and all(isinstance(r, str) and r in known for r in roles),
        f"inputs must be roles of the {contract.name} contract",
    )
    _require(roles == [r for r in known if r in roles], "inputs must be unique and in contract order")
    required = [spec.role for spec in contract.required]
    _require(roles[: len(required)] == required, f"inputs must start with {required}")
    variants = data["variants"]
    _require(isinstance(variants, list) and variants, "a graph needs at least one variant")
    kinds = [v.get("batch") if isinstance(v, dict) else None for v in variants]
    _require(
        kinds == ["any"] or (len(kinds) == 2 and set(kinds) == {"many", "one"}),
        'variants must be one "any", or "many" and "one"',
    )
    decoded = tuple(_decode_variant(v, frozenset(roles)) for v in variants)
    return LossGraph(contract.name, tuple(roles), decoded)


def _decode_variant(data: dict[str, Any], roles: frozenset[str]) -> Variant:
    _require(set(data) == {"batch", "nodes", "output"}, "a variant has exactly the keys batch, nodes, output")
    nodes = data["nodes"]
    _require(isinstance(nodes, list), "nodes must be a list")
    _require(len(nodes) <= MAX_NODES, f"a variant has {len(nodes)} nodes; the limit is {MAX_NODES}")
    decoded: list[Node] = []
    for index, raw in enumerate(nodes):
        decoded.append(_decode_node(raw, index, decoded, roles))
    output = _decode_value(data["output"], _Context(len(decoded), decoded, roles, None), 0)
    _require(isinstance(output, Ref), "the output must reference a node or an input")
    _require(output.node is None or decoded[output.node].op != "guard", "the output cannot be a guard")
    return Variant(data["batch"], tuple(decoded), output)


@dataclass(frozen=True)
class _Context:
    index: int
    nodes: list[Node]
    roles: frozenset[str]
    line: int | None

    def fail(self, message: str) -> GraphError:
        return GraphError(message, self.index, self.line)


def _decode_node(raw: Any, index: int, nodes: list[Node], roles: frozenset[str]) -> Node:
    _require(isinstance(raw, dict), "a node must be a JSON object", index)
    line = raw.get("line")
    _require(
        line is None or (type(line) is int and 0 < line < 10**6), "line must be a positive integer", index
    )
    context = _Context(index, nodes, roles, line)
    op = raw.get("op")
    _require(op in NODE_OPS, "unknown node op", index, line)
    allowed_keys = {"op", "args", "line"} | ({"target", "kwargs"} if op != "guard" else set())
    _require(
        set(raw) <= allowed_keys and "args" in raw, f"unexpected or missing node keys for {op}", index, line
    )
    _require(isinstance(raw["args"], list), "args must be a list", index, line)
    args = tuple(_decode_value(a, context, 0) for a in raw["args"])
    if op == "guard":
        _require(
            len(args) == 2 and isinstance(args[0], Ref) and isinstance(args[1], bool),
            "a guard has the arguments [reference, true|false]",
            index,
            line,
        )
        return Node("guard", "guard", args, (), line)
    target = raw.get("target")
    _require(isinstance(target, str), "target must be a name", index, line)
    raw_kwargs = raw.get("kwargs", {})
    _require(isinstance(raw_kwargs, dict), "kwargs must be an object", index, line)
    kwargs = tuple((k, _decode_kwarg(k, v, context)) for k, v in sorted(raw_kwargs.items()))
    node = Node(op, target, args, kwargs, line)
    _check_target(node, context)
    _check_dtypes(node, context)
    return node


def _decode_kwarg(name: Any, value: Any, context: _Context) -> Any:
    if not (isinstance(name, str) and _KWARG.match(name)):
        raise context.fail("invalid keyword name")
    if name == "out":
        raise context.fail("`out=` writes into an existing tensor; in-place operations are not allowed")
    decoded = _decode_value(value, context, 0)
    if name == "inplace" and decoded is not False:
        raise context.fail("`inplace=True` is not allowed; compute a new tensor")
    return decoded


def _check_target(node: Node, context: _Context) -> None:
    target = node.target
    if node.op == "call_function":
        if target not in FUNCTIONS:
            raise context.fail("the target is not an allowed operation")
    elif node.op == "call_method":
        if target not in TENSOR_METHODS:
            inplace = target.endswith("_") and not target.startswith("_")
            reason = "in-place methods are not allowed" if inplace else "it is not an allowed tensor method"
            raise context.fail(f"method call: {reason}")
        if not node.args or not isinstance(node.args[0], Ref):
            raise context.fail("a method call needs a tensor to call it on")
    else:
        if target not in ATTRIBUTES:
            raise context.fail("the attribute is not allowed")
        if len(node.args) != 1 or not isinstance(node.args[0], Ref) or node.kwargs:
            raise context.fail("an attribute read has exactly one argument, a reference")


def _is_dtype(value: Any, nodes: list[Node]) -> bool:
    if isinstance(value, torch.dtype):
        return True
    if isinstance(value, Ref) and value.node is not None:
        source = nodes[value.node]
        return source.op == "getattr" and source.target == "dtype"
    return False


def _contains_dtype(value: Any, nodes: list[Node]) -> bool:
    if _is_dtype(value, nodes):
        return True
    if isinstance(value, (list, tuple)):
        return any(_contains_dtype(v, nodes) for v in value)
    return False


def _check_dtypes(node: Node, context: _Context) -> None:
    """dtypes may only say what dtype to compute in (`dtype=` or `.to(dtype)`), never be compared or computed
    with: a loss must compute the same function in every precision."""
    message = "a dtype may only be used as the dtype argument of a conversion, not compared or computed with"
    for position, arg in enumerate(node.args):
        conversion = node.op == "call_method" and node.target == "to" and position == 1
        if _contains_dtype(arg, context.nodes) and not (conversion and _is_dtype(arg, context.nodes)):
            raise context.fail(message)
    for name, value in node.kwargs:
        if _contains_dtype(value, context.nodes) and not (
            name == "dtype" and _is_dtype(value, context.nodes)
        ):
            raise context.fail(message)


def _decode_value(value: Any, context: _Context, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise context.fail("arguments are nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise context.fail("integer constant out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise context.fail('non-finite numbers are written {"float": "inf"}')
        return value
    if isinstance(value, str):
        if value not in STRINGS:
            raise context.fail("string constant is not allowed")
        return value
    if isinstance(value, list):
        if len(value) > MAX_SEQUENCE:
            raise context.fail(f"lists are limited to {MAX_SEQUENCE} items")
        return [_decode_value(v, context, depth + 1) for v in value]
    if isinstance(value, dict):
        return _decode_object(value, context, depth)
    raise context.fail(f"unsupported argument type {type(value).__name__}")


def _decode_object(value: dict[str, Any], context: _Context, depth: int) -> Any:
    keys = set(value)
    if keys == {"node"}:
        index = value["node"]
        if type(index) is not int or not 0 <= index < context.index:
            raise context.fail("a node reference must point to an earlier node (cycle or bad index)")
        if context.nodes[index].op == "guard":
            raise context.fail("a guard has no value to reference")
        return Ref(node=index)
    if keys == {"input"}:
        if value["input"] not in context.roles:
            raise context.fail("reference to an input the graph does not declare")
        return Ref(role=value["input"])
    if keys == {"tuple"} and isinstance(value["tuple"], list) and len(value["tuple"]) <= MAX_SEQUENCE:
        return tuple(_decode_value(v, context, depth + 1) for v in value["tuple"])
    if keys == {"slice"} and isinstance(value["slice"], list) and len(value["slice"]) == 3:
        parts = [_decode_value(v, context, depth + 1) for v in value["slice"]]
        if not all(p is None or type(p) is int or isinstance(p, Ref) for p in parts):
            raise context.fail("slice bounds must be integers, null or references")
        return slice(*parts)
    if keys == {"ellipsis"} and value["ellipsis"] is True:
        return Ellipsis
    if keys == {"dtype"} and value["dtype"] in DTYPES:
        return DTYPES[value["dtype"]]
    if keys == {"float"} and value["float"] in _NON_FINITE:
        return _NON_FINITE[value["float"]]
    if keys == {"tensor", "dtype"} and value["dtype"] in DTYPES:
        return _decode_tensor(value["tensor"], value["dtype"], context)
    raise context.fail("unsupported argument object")


def _decode_tensor(values: Any, dtype: str, context: _Context) -> TensorConstant:
    count = 0

    def check(item: Any, depth: int) -> None:
        nonlocal count
        if depth > MAX_DEPTH:
            raise context.fail("tensor constant is nested too deeply")
        if isinstance(item, list):
            for element in item:
                check(element, depth + 1)
            return
        finite = type(item) is bool or (type(item) is int and abs(item) <= MAX_INT)
        if not (finite or (type(item) is float and math.isfinite(item))):
            raise context.fail("tensor constants hold finite numbers only")
        count += 1
        if count > MAX_CONSTANT_ELEMENTS:
            raise context.fail(f"tensor constants are limited to {MAX_CONSTANT_ELEMENTS} elements")

    check(values, 0)
    constant = TensorConstant(values, dtype)
    try:
        constant.build()
    except (TypeError, ValueError, RuntimeError):
        raise context.fail("tensor constant is not a rectangular array of numbers") from None
    return constant
