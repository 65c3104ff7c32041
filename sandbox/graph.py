"""Loss graphs as plain data: the format and its encoding (decoding and validation: `sandbox.graph_decode`).

A traced loss is stored as JSON (`LossGraph.to_json()`):

    {"format": "evopo-loss-graph", "version": 1, "contract": "sequence",
     "inputs": ["policy_chosen_logps", ..., "beta"],              # roles read, in contract order
     "variants": [{"batch": "any",                                # or "many" (batch >= 2) and "one" (batch 1)
                   "nodes": [{"op": "call_function", "target": "operator.sub",
                              "args": [{"input": "policy_chosen_logps"}, {"input": "policy_rejected_logps"}],
                              "kwargs": {}, "line": 7},
                             {"op": "call_method", "target": "std", "args": [{"node": 0}], "kwargs": {}},
                             {"op": "getattr", "target": "shape", "args": [{"node": 0}]},
                             {"op": "guard", "args": [{"node": 4}, true]}, ...],
                   "output": {"node": 9}}]}

Node ops: `call_function` (target: a name in `sandbox.ops.FUNCTIONS`), `call_method` (a tensor method in
`TENSOR_METHODS`; args[0] is the tensor), `getattr` (an attribute in `ATTRIBUTES`), `guard` (a size
predicate that must have the recorded truth value, else the variant does not apply). Arguments are JSON
literals (finite numbers, booleans, null, allowed strings, lists) or one-key objects: {"node": i} (an earlier
node), {"input": role}, {"tuple": [...]}, {"slice": [start, stop, step]}, {"ellipsis": true},
{"dtype": name}, {"float": "inf" | "-inf" | "nan"}, {"tensor": nested list, "dtype": name} (at most
`MAX_CONSTANT_ELEMENTS`). "line" is the candidate line that produced a node (for messages only).

`sandbox.graph_decode.decode_graph` refuses anything else with a `GraphError` naming the node: unknown ops or names, `out=`,
`inplace=True`, dtypes used other than as a dtype argument, forward references (so no cycles), oversized graphs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from sandbox.ops import DTYPE_NAMES, DTYPES

FORMAT = "evopo-loss-graph"
VERSION = 1
MAX_NODES = 2000
MAX_CONSTANT_ELEMENTS = 64
BATCH_KINDS = ("any", "many", "one")


class GraphError(ValueError):
    """A loss graph that is malformed, tampered with or outside the allow-list."""

    def __init__(self, message: str, node: int | None = None, line: int | None = None) -> None:
        where = "" if node is None else f"node {node}" + ("" if line is None else f" (line {line})") + ": "
        super().__init__(where + message)
        self.reason = message
        self.node = node
        self.line = line


@dataclass(frozen=True)
class Ref:
    """A reference to an earlier node's value (`node`) or to a contract input (`role`)."""

    node: int | None = None
    role: str | None = None


@dataclass(frozen=True)
class TensorConstant:
    """A small constant tensor, rebuilt on the device of the inputs when the graph runs."""

    values: Any  # nested lists of numbers
    dtype: str

    def build(self, device: torch.device | None = None) -> torch.Tensor:
        return torch.tensor(self.values, dtype=DTYPES[self.dtype], device=device)


@dataclass(frozen=True)
class Node:
    op: str
    target: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Variant:
    """The nodes traced for a batch kind: "any", or "many" (batch >= 2) and "one" (a batch of one)."""

    batch: str
    nodes: tuple[Node, ...]
    output: Ref

    def encoded(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "nodes": [_encode_node(n) for n in self.nodes],
            "output": _encode(self.output),
        }

    def same_as(self, other: Variant) -> bool:
        """The same computation (NaN constants compare equal here, unlike in `==`)."""
        return json.dumps(self.encoded(), sort_keys=True) == json.dumps(other.encoded(), sort_keys=True)


@dataclass(frozen=True)
class LossGraph:
    contract: str
    inputs: tuple[str, ...]
    variants: tuple[Variant, ...]

    @property
    def reads(self) -> frozenset[str]:
        """The roles that some node (or the output) of some variant reads; a bound input may go unread."""
        found: set[str] = set()
        for variant in self.variants:
            for node in variant.nodes:
                _collect_roles([*node.args, *(value for _, value in node.kwargs)], found)
            _collect_roles(variant.output, found)
        return frozenset(found)

    def variant_for(self, batch: int) -> Variant:
        """The variant that applies to a batch of `batch` examples."""
        wanted = "one" if batch == 1 else "many"
        for variant in self.variants:
            if variant.batch in ("any", wanted):
                return variant
        raise GraphError(f"the graph has no variant for a batch of {batch}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "contract": self.contract,
            "inputs": list(self.inputs),
            "variants": [v.encoded() for v in self.variants],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _collect_roles(value: Any, found: set[str]) -> None:
    if isinstance(value, Ref):
        if value.role is not None:
            found.add(value.role)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect_roles(item, found)
    elif isinstance(value, slice):
        _collect_roles([value.start, value.stop, value.step], found)


def _encode_node(node: Node) -> dict[str, Any]:
    encoded: dict[str, Any] = {"op": node.op, "args": [_encode(a) for a in node.args]}
    if node.op != "guard":
        encoded["target"] = node.target
        encoded["kwargs"] = {k: _encode(v) for k, v in node.kwargs}
    if node.line is not None:
        encoded["line"] = node.line
    return encoded


def _encode(value: Any) -> Any:
    if isinstance(value, Ref):
        return {"node": value.node} if value.node is not None else {"input": value.role}
    if isinstance(value, TensorConstant):
        return {"tensor": value.values, "dtype": value.dtype}
    if isinstance(value, torch.dtype):
        return {"dtype": DTYPE_NAMES[value]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, slice):
        return {"slice": [_encode(value.start), _encode(value.stop), _encode(value.step)]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    return value
