"""The trusted interpreter: run a validated loss graph with the torch functions its names stand for.

`build_loss(graph)` is how everything outside the sandbox child (trainer, report, retrain) gets a loss
callable: it decodes and validates the graph data (`decode_graph`) and returns a `GraphLoss` that
evaluates the nodes in order. No candidate source is compiled or executed; only the operations of
`sandbox.ops` run, on the caller's tensors, without writing into them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sandbox.contract import Contract, get_contract
from sandbox.graph import LossGraph, Node, Ref, TensorConstant, Variant
from sandbox.graph_decode import decode_graph
from sandbox.ops import FUNCTIONS

# The largest tensor (elements) one node may produce; a graph asking for more fails instead of exhausting
# memory. Sequence losses work on (batch,) tensors, so this leaves room for pairwise (batch x batch) terms.
MAX_ELEMENTS = 2**24
_SIZED_METHODS = frozenset({"expand", "view", "reshape"})
_SIZED_FUNCTIONS = frozenset({"torch.reshape", "torch.broadcast_to"})


class GraphRuntimeError(RuntimeError):
    """A node failed while the graph ran: `node`, `target` and `line` say which; `message` (fixed text) and
    `__cause__` (the exception the operation raised, if any) say why."""

    def __init__(self, message: str, node: int, target: str, line: int | None) -> None:
        where = f"node {node} ({target}" + ("" if line is None else f", line {line}") + ")"
        super().__init__(f"{where}: {message}")
        self.message = message
        self.node = node
        self.target = target
        self.line = line


class GuardMismatch(GraphRuntimeError):
    """A size condition recorded at tracing time does not hold for these inputs."""


def _requested_elements(sizes: Any) -> int:
    """The product of the explicit sizes passed to expand/view/reshape (-1 entries ignored)."""
    flat: list[int] = []

    def collect(value: Any) -> None:
        if isinstance(value, (list, tuple, torch.Size)):
            for item in value:
                collect(item)
        elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
            flat.append(value)

    collect(sizes)
    return math.prod(flat)


def _references(value: Any) -> list[int]:
    if isinstance(value, Ref):
        return [] if value.node is None else [value.node]
    if isinstance(value, (list, tuple)):
        return [i for item in value for i in _references(item)]
    if isinstance(value, slice):
        return _references([value.start, value.stop, value.step])
    return []


def release_plan(variant: Variant) -> list[list[int]]:
    """For each node, the earlier nodes whose values are not needed after it (freed as the graph runs)."""
    last_use: dict[int, int] = {}
    for index, node in enumerate(variant.nodes):
        for ref in _references([*node.args, *(v for _, v in node.kwargs)]):
            last_use[ref] = index
    for ref in _references(variant.output):
        last_use[ref] = len(variant.nodes)
    plan: list[list[int]] = [[] for _ in variant.nodes]
    for ref, index in last_use.items():
        if index < len(variant.nodes):
            plan[index].append(ref)
    for index in range(len(variant.nodes)):
        if index not in last_use:
            plan[index].append(index)  # never used: free it at once
    return plan


class _Run:
    def __init__(self, inputs: dict[str, Any], max_elements: int) -> None:
        self.inputs = inputs
        self.values: list[Any] = []
        self.max_elements = max_elements
        tensors = [v for v in inputs.values() if isinstance(v, torch.Tensor)]
        self.device = tensors[0].device if tensors else None

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Ref):
            return self.inputs[value.role] if value.node is None else self.values[value.node]
        if isinstance(value, TensorConstant):
            return value.build(self.device)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.resolve(v) for v in value)
        if isinstance(value, slice):
            return slice(self.resolve(value.start), self.resolve(value.stop), self.resolve(value.step))
        return value

    def evaluate(self, index: int, node: Node) -> Any:
        args = [self.resolve(a) for a in node.args]
        kwargs = {k: self.resolve(v) for k, v in node.kwargs}
        if node.op == "guard":
            if bool(args[0]) != args[1]:
                raise GuardMismatch(
                    f"traced as {args[1]}: the size condition does not hold for these inputs",
                    index,
                    node.target,
                    node.line,
                )
            return None
        self._check_requested(index, node, args)
        if node.op == "call_function":
            return FUNCTIONS[node.target](*args, **kwargs)
        receiver = args[0]
        if node.op == "getattr":
            return getattr(receiver, node.target)
        if not isinstance(receiver, torch.Tensor):
            raise TypeError(f".{node.target}() needs a tensor, got {type(receiver).__name__}")
        return getattr(torch.Tensor, node.target)(receiver, *args[1:], **kwargs)

    def _check_requested(self, index: int, node: Node, args: list[Any]) -> None:
        sized = (node.op == "call_method" and node.target in _SIZED_METHODS) or (
            node.op == "call_function" and node.target in _SIZED_FUNCTIONS
        )
        if sized and _requested_elements(args[1:]) > self.max_elements:
            raise GraphRuntimeError(
                f"asks for more than {self.max_elements} elements (a memory bomb?)",
                index,
                node.target,
                node.line,
            )

    def run(self, variant: Variant, stop_after: int | None, plan: list[list[int]] | None) -> Any:
        for index, node in enumerate(variant.nodes):
            try:
                value = self.evaluate(index, node)
            except GraphRuntimeError:
                raise
            except Exception as exc:
                error = GraphRuntimeError("failed", index, node.target, node.line)
                raise error from exc
            if isinstance(value, torch.Tensor) and value.numel() > self.max_elements:
                raise GraphRuntimeError(
                    f"produced {value.numel()} elements; the limit is {self.max_elements} (a memory bomb?)",
                    index,
                    node.target,
                    node.line,
                )
            self.values.append(value)
            if stop_after is not None and index >= stop_after:
                return value
            if plan is not None:
                for released in plan[index]:
                    self.values[released] = None
        return self.resolve(variant.output)


def batch_size(contract: Contract, inputs: dict[str, Any]) -> int:
    """The batch size of a call: the first dimension of the contract's batch input."""
    batch_input = inputs.get(contract.batch_role)
    if not isinstance(batch_input, torch.Tensor) or batch_input.dim() == 0:
        raise TypeError(f"{contract.batch_role} must be a tensor of shape (batch, ...)")
    return batch_input.shape[0]


def run_variant(
    variant: Variant,
    inputs: dict[str, Any],
    *,
    max_elements: int = MAX_ELEMENTS,
    stop_after: int | None = None,
    plan: list[list[int]] | None = None,
) -> Any:
    """Evaluate one variant on inputs keyed by role (up to node `stop_after` when given), freeing each value
    after its last use when `plan` (`release_plan(variant)`) is given."""
    return _Run(inputs, max_elements).run(variant, stop_after, plan)


class GraphLoss:
    """A loss callable rebuilt from a graph: `loss(policy_chosen_logps, ..., beta)` in contract order (optional
    inputs by keyword). It holds the graph and nothing else."""

    __name__ = "graph_loss"

    def __init__(self, graph: LossGraph, max_elements: int = MAX_ELEMENTS) -> None:
        self.graph = graph
        self.contract = get_contract(graph.contract)
        self.max_elements = max_elements
        self._required = [spec.role for spec in self.contract.required]
        self._plans = {variant.batch: release_plan(variant) for variant in graph.variants}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Inputs keyed by role, from a call in contract order."""
        if len(args) > len(self._required):
            raise TypeError(f"the loss takes {len(self._required)} positional inputs, got {len(args)}")
        inputs = dict(zip(self._required, args, strict=False))
        for name, value in kwargs.items():
            if name in inputs or name not in {spec.role for spec in self.contract.inputs}:
                raise TypeError(f"unexpected or repeated input {name!r}")
            inputs[name] = value
        missing = [role for role in self.graph.inputs if role not in inputs]
        if missing:
            raise TypeError(f"missing inputs: {', '.join(missing)}")
        return inputs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = self.bind(args, kwargs)
        variant = self.graph.variant_for(batch_size(self.contract, inputs))
        return run_variant(variant, inputs, max_elements=self.max_elements, plan=self._plans[variant.batch])


def build_loss(graph: LossGraph | dict[str, Any] | str, max_elements: int = MAX_ELEMENTS) -> GraphLoss:
    """A loss callable from a graph or its JSON (dict or text); raises `GraphError` for a bad graph."""
    if not isinstance(graph, LossGraph):
        graph = decode_graph(graph)
    return GraphLoss(graph, max_elements)
