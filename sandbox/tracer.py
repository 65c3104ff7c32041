"""Trace a candidate loss into a `LossGraph` (sandbox child only: this calls the candidate's code).

The candidate is called with torch.fx proxies for its contract inputs, so every tensor operation it performs
becomes a node; Python that is not tensor math (loops over constants, helper functions) simply runs. Its
result is converted to the graph format and validated against the allow-list. Rejected, with a line number:
Python control flow on a traced value (`if x.dtype == ...`, `if (x > 0).all()`, `while`, min/max of
tensors), any operation outside the allow-list, in-place operations, iteration over tensors, and a loss whose
graph changes from one call to the next (state kept across calls).

Control flow on a size (`if x.numel() > 1`) is the one exception: it is recorded as a guard node. It must not
change for any batch size of two or more (checked over `GUARD_BATCHES`); when it differs for a batch of one,
a second variant is traced for that case. In a per-token contract no size condition may change with the
sequence length either (checked over `GUARD_SEQUENCES`): the batch-of-one test there is `x.shape[0] > 1`.
"""

from __future__ import annotations

import builtins
import inspect
import random
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from sandbox.contract import Contract
from sandbox.graph import GraphError, LossGraph, Node, Ref, TensorConstant, Variant
from sandbox.graph_decode import decode_graph
from sandbox.interpreter import GraphRuntimeError, GuardMismatch, run_variant
from sandbox.namespace import CANDIDATE_FILENAME
from sandbox.ops import ATTRIBUTES, DTYPE_NAMES, FUNCTION_NAMES, SIZE_ATTRIBUTES, SIZE_METHODS, TENSOR_METHODS

GUARD_BATCHES = (*range(1, 65), 100, 128, 255, 256, 511, 512, 1000, 1024, 4096)
# Per-token contracts: the sequence lengths over which no size condition may change (the padded length of a
# batch depends on the other examples in it), and the length assumed while tracing.
GUARD_SEQUENCES = (1, 2, 3, 5, 8, 13, 31, 64, 100, 128, 255, 256, 511, 512, 1000, 1024, 2048, 4096)
TRACE_SEQUENCE = 7
MAX_CONSTANT_ELEMENTS = 64


class TraceRejected(Exception):
    """The candidate cannot be traced into an allowed graph; `rule` and `line` say why and where."""

    def __init__(self, rule: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.line = line

    def __str__(self) -> str:
        where = "" if self.line is None else f"line {self.line}: "
        return f"{where}[{self.rule}] {self.args[0]}"


def _guard(value: Any, expected: bool) -> None:
    """Marker target for guard nodes during tracing."""


def _constant(value: TensorConstant) -> None:
    """Marker target for tensor constants during tracing."""


def candidate_line() -> int | None:
    """The innermost line of candidate code on the current call stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == CANDIDATE_FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


def _is_size(node: fx.Node) -> bool:
    """Whether the node's value is a size (numel, shape, dim) or arithmetic on sizes and constants only."""
    if node.op == "call_method":
        return node.target in SIZE_METHODS
    if node.op != "call_function":
        return False
    if node.target is builtins.getattr:
        return node.args[1] in SIZE_ATTRIBUTES
    name = FUNCTION_NAMES.get(id(node.target), "")
    if name == "torch.numel":
        return True
    if name.startswith("operator."):
        inputs = node.all_input_nodes
        return bool(inputs) and all(_is_size(n) for n in inputs)
    return False


CONTROL_FLOW = (
    "Python control flow (if/while/assert, and/or/not, min()/max()/sorted() of tensors, bool()) cannot depend on "
    "tensor values, dtypes or beta; use torch.where, torch.maximum/torch.minimum or torch.clamp"
)


class _LossTracer(fx.Tracer):
    def __init__(self, contract: Contract, batch: int) -> None:
        super().__init__(autowrap_modules=(), autowrap_functions=())
        self.graph = fx.Graph()
        self.root = torch.nn.Module()
        self.tensor_attrs: dict[Any, str] = {}
        self.contract = contract
        self.batch = batch
        self.guards = 0

    def create_node(
        self, kind: str, target: Any, args: Any, kwargs: Any, name: Any = None, type_expr: Any = None
    ):
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        node.meta["line"] = candidate_line()
        return node

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor) and not isinstance(a, fx.Proxy):
            return self.create_node("call_function", _constant, (_tensor_constant(a),), {})
        return super().create_arg(a)

    def iter(self, obj: fx.Proxy) -> Any:
        raise TraceRejected(
            "iteration",
            "iterating over a tensor is not allowed (its length is the batch size); use tensor operations",
            candidate_line(),
        )

    def keys(self, obj: fx.Proxy) -> Any:
        raise TraceRejected("iteration", "a tensor cannot be unpacked with **", candidate_line())

    def to_bool(self, obj: fx.Proxy) -> bool:
        line = candidate_line()
        if not _is_size(obj.node):
            raise TraceRejected("control-flow", CONTROL_FLOW, line)
        partial = to_variant(self.graph, "any", obj.node, partial=True)
        value = bool(run_variant(partial, dummy_inputs(self.contract, self.batch)))
        self.create_node("call_function", _guard, (obj.node, value), {})
        self.guards += 1
        return value


def _tensor_constant(tensor: torch.Tensor) -> TensorConstant:
    if tensor.requires_grad or tensor.numel() > MAX_CONSTANT_ELEMENTS or tensor.dtype not in DTYPE_NAMES:
        raise TraceRejected(
            "constant",
            f"constant tensors must be small (at most {MAX_CONSTANT_ELEMENTS} elements), of a plain dtype "
            "and not require grad",
            candidate_line(),
        )
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise TraceRejected("constant", "constant tensors must be finite; use float('inf') directly", None)
    return TensorConstant(tensor.detach().cpu().tolist(), DTYPE_NAMES[tensor.dtype])


def dummy_inputs(contract: Contract, batch: int, sequence: int = TRACE_SEQUENCE) -> dict[str, Any]:
    """Plain inputs of the contract's shapes for evaluating size conditions (values do not matter): (batch,)
    tensors, (batch, sequence) for per-token inputs, 0.1 for scalars."""
    inputs: dict[str, Any] = {}
    for spec in contract.inputs:
        shape = (batch, sequence) if spec.per_token else (batch,)
        inputs[spec.role] = torch.zeros(shape) if spec.kind == "tensor" else 0.1
    return inputs


def _convert(value: Any, refs: dict[fx.Node, Any]) -> Any:
    if isinstance(value, fx.Node):
        return refs[value]
    if isinstance(value, (list, tuple)):
        converted = [_convert(v, refs) for v in value]
        return converted if isinstance(value, list) else tuple(converted)
    if isinstance(value, slice):
        return slice(_convert(value.start, refs), _convert(value.stop, refs), _convert(value.step, refs))
    if isinstance(value, dict):
        raise TraceRejected("argument", "dictionaries cannot be passed to tensor operations")
    return value


def _reject_node(node: fx.Node, rule: str, message: str) -> TraceRejected:
    return TraceRejected(rule, message, node.meta.get("line"))


def _public_name(target: Any) -> str:
    """`torch.save`-style name of a real torch/F function, or fixed text (never text the candidate chose)."""
    name = getattr(target, "__name__", None)
    if isinstance(name, str):
        for prefix, module in (("torch", torch), ("F", torch.nn.functional)):
            if getattr(module, name, None) is target:
                return f"`{prefix}.{name}`"
    return "an operation outside the allow-list"


def _shown_member(name: Any) -> str:
    return f"`.{name}`" if isinstance(name, str) and hasattr(torch.Tensor, name) else "an unknown member"


def _target_name(node: fx.Node) -> tuple[str, str]:
    """(graph op, target name) for a traced node; raises TraceRejected for anything outside the allow-list."""
    target = node.target
    if node.op == "call_method":
        if target not in TENSOR_METHODS:
            if target.endswith("_") and not target.startswith("_"):
                message = f"{_shown_member(target)} modifies a tensor in place; compute a new tensor instead"
                raise _reject_node(node, "in-place", message)
            raise _reject_node(node, "operation", f"{_shown_member(target)} is not an allowed tensor method")
        return "call_method", target
    if node.op != "call_function":
        raise _reject_node(node, "operation", "unsupported graph operation")
    if target is builtins.getattr:
        if node.args[1] not in ATTRIBUTES:
            raise _reject_node(node, "attribute", f"attribute {_shown_member(node.args[1])} is not allowed")
        return "getattr", node.args[1]
    name = FUNCTION_NAMES.get(id(target))
    if name is None:
        raise _reject_node(node, "operation", f"{_public_name(target)} is not an allowed operation")
    return "call_function", name


def to_variant(graph: fx.Graph, batch: str, output: Any, partial: bool = False) -> Variant:
    """Convert the traced fx graph into a graph variant returning `output`: every node traced (guards and
    unused nodes included: they run in training as they ran in the tests), or with `partial` only the nodes
    up to `output` (to evaluate a size condition while tracing)."""
    refs: dict[fx.Node, Any] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.op == "placeholder":
            refs[node] = Ref(role=node.target)
            continue
        if node.op == "output":
            break
        line = node.meta.get("line")
        if node.target is _constant:
            refs[node] = node.args[0]
        elif node.target is _guard:
            nodes.append(Node("guard", "guard", (_convert(node.args[0], refs), node.args[1]), (), line))
        else:
            op, target = _target_name(node)
            args = tuple(_convert(a, refs) for a in (node.args[:1] if op == "getattr" else node.args))
            kwargs = tuple((k, _convert(v, refs)) for k, v in sorted(node.kwargs.items()))
            refs[node] = Ref(node=len(nodes))
            nodes.append(Node(op, target, args, kwargs, line))
        if partial and node is output:
            break
    result = refs.get(output) if isinstance(output, fx.Node) else None
    if not isinstance(result, Ref):
        raise TraceRejected("output", "loss_fn must return a tensor computed from its inputs")
    return Variant(batch, tuple(nodes), result)


_CONSTANT_DEFAULT_TYPES = (int, float, bool, str, type(None))


def bind_parameters(function: Any, contract: Contract) -> tuple[list[str], list[str]]:
    """(roles passed positionally, optional roles passed by keyword) for the candidate's signature.

    The first parameters take the contract's required inputs in order; a later parameter named like one of the
    contract's optional inputs receives it; every other parameter keeps its default, which must be a constant.
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        raise TraceRejected("signature", "loss_fn must be a plain function") from None
    required = [spec.role for spec in contract.required]
    optional = {spec.role for spec in contract.optional}
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    head = parameters[: len(required)]
    if len(head) < len(required) or any(p.kind not in plain for p in head):
        raise TraceRejected(
            "signature", f"loss_fn must take the {len(required)} inputs ({', '.join(required)})"
        )
    keywords = []
    for parameter in parameters[len(required) :]:
        if parameter.name in optional and parameter.kind != inspect.Parameter.VAR_KEYWORD:
            keywords.append(parameter.name)
        elif parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TraceRejected("signature", "*args and **kwargs parameters are not allowed")
        elif parameter.default is inspect.Parameter.empty:
            raise TraceRejected("signature", f"parameter {len(required) + 1 + len(keywords)} needs a default")
        elif not _constant_default(parameter.default):
            raise TraceRejected(
                "stateful",
                "default arguments must be constants (numbers, strings, None), not lists or tensors",
            )
    return required, keywords


def _constant_default(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_constant_default(v) for v in value)
    return type(value) in _CONSTANT_DEFAULT_TYPES


@dataclass(frozen=True)
class _Trace:
    variant: Variant
    guards: int
    roles: tuple[str, ...]


def trace_once(function: Any, contract: Contract, batch: int, kind: str) -> _Trace:
    """Call the candidate once with proxies and return its graph variant (batch: the size assumed for guards)."""
    tracer = _LossTracer(contract, batch)
    positional, keywords = bind_parameters(function, contract)
    proxies = {role: tracer.create_proxy("placeholder", role, (), {}) for role in (*positional, *keywords)}
    result = function(*(proxies[r] for r in positional), **{k: proxies[k] for k in keywords})
    if not isinstance(result, fx.Proxy):
        raise TraceRejected("output", "loss_fn must return a tensor computed from its inputs, not a constant")
    roles = tuple(spec.role for spec in contract.inputs if spec.role in proxies)
    return _Trace(to_variant(tracer.graph, kind, result.node), tracer.guards, roles)


def _first_failing_batch(
    variant: Variant, contract: Contract, batches: tuple[int, ...], sequence: int = TRACE_SEQUENCE
) -> int | None:
    """The first batch size (of `batches`) at which a guard of the variant fails, None when all hold."""
    last = max(i for i, n in enumerate(variant.nodes) if n.op == "guard")
    for batch in batches:
        try:
            run_variant(variant, dummy_inputs(contract, batch, sequence), stop_after=last)
        except GuardMismatch:
            return batch
        except GraphRuntimeError:
            continue  # not a guard problem; the gradient tests report it
    return None


def _check_sequence_guards(variants: tuple[Variant, ...], contract: Contract) -> None:
    """Per-token contracts: reject size conditions that change with the sequence length."""
    for variant in variants:
        if not any(n.op == "guard" for n in variant.nodes):
            continue
        batch = {"one": (1,), "many": (2, 9)}.get(variant.batch, (1, 2, 9))
        for sequence in GUARD_SEQUENCES:
            if _first_failing_batch(variant, contract, batch, sequence) is not None:
                line = next(n.line for n in variant.nodes if n.op == "guard")
                raise TraceRejected(
                    "sequence-length",
                    f"control flow depends on the sequence length (it changes at a length of {sequence}); "
                    "per-token losses must not branch on sizes other than a batch of one",
                    line,
                )


def trace_loss(function: Any, contract: Contract, rng: random.Random | None = None) -> LossGraph:
    """Trace `function` into a validated LossGraph; raises TraceRejected (and what the candidate raises)."""
    rng = rng or random.Random()
    first, second = rng.sample(range(2, 65), 2)
    many = trace_once(function, contract, first, "many")
    variants: tuple[Variant, ...] = (Variant("any", many.variant.nodes, many.variant.output),)
    if many.guards:
        failed = _first_failing_batch(many.variant, contract, tuple(b for b in GUARD_BATCHES if b > 1))
        if failed is not None:
            line = next(n.line for n in many.variant.nodes if n.op == "guard")
            raise TraceRejected(
                "batch-size",
                f"control flow depends on the batch size (it changes at a batch of {failed}); the only size "
                "condition allowed is a special case for a batch of one, such as `if x.numel() > 1`",
                line,
            )
        if _first_failing_batch(many.variant, contract, (1,)) is not None:
            variants = (many.variant, trace_once(function, contract, 1, "one").variant)
    if not trace_once(function, contract, second, "many").variant.same_as(many.variant):
        raise TraceRejected(
            "stateful",
            "the loss computed a different graph on a second call: keep no state between calls (no mutable "
            "default arguments, no counters) and do not depend on randomness",
        )
    if contract.per_token:
        _check_sequence_guards(variants, contract)
    graph = LossGraph(contract.name, many.roles, variants)
    try:
        return decode_graph(graph.to_json())
    except GraphError as exc:
        raise TraceRejected("graph", exc.reason, exc.line) from None
