"""The graph format and the trusted interpreter: round trips, what the validator refuses, how graphs run."""

import json
import math

import pytest
import torch

from sandbox.contract import SEQUENCE
from sandbox.graph import MAX_NODES, GraphError, LossGraph, Node, Ref, TensorConstant, Variant
from sandbox.graph_decode import decode_graph
from sandbox.interpreter import GraphRuntimeError, GuardMismatch, build_loss, release_plan, run_variant

ROLES = [spec.role for spec in SEQUENCE.required]
PC, PR, RC, RR, BETA = (Ref(role=r) for r in ROLES)


def _graph(nodes, output, batch="any", extra=()):
    return LossGraph("sequence", tuple(ROLES), (Variant(batch, tuple(nodes), output), *extra))


def _dpo_nodes():
    return [
        Node("call_function", "operator.sub", (PC, PR)),
        Node("call_function", "operator.sub", (RC, RR)),
        Node("call_function", "operator.sub", (Ref(0), Ref(1))),
        Node("call_function", "operator.mul", (BETA, Ref(2))),
        Node("call_function", "F.logsigmoid", (Ref(3),)),
        Node("call_function", "operator.neg", (Ref(4),)),
    ]


def _batch(size=5):
    gen = torch.Generator().manual_seed(size)
    return [-torch.rand(size, generator=gen) * 40 for _ in range(4)]


def test_a_graph_round_trips_through_json_text():
    graph = _graph(
        [
            *_dpo_nodes(),
            Node("call_method", "clamp", (Ref(5),), (("max", math.inf), ("min", -1.5))),
            Node("call_function", "operator.getitem", (Ref(6), slice(1, None, None))),
            Node("call_function", "operator.mul", (Ref(7), TensorConstant(2.0, "float32"))),
            Node("call_method", "to", (Ref(8), torch.float64), line=4),
            Node("call_method", "float", (Ref(9),)),
            Node("call_function", "operator.getitem", (Ref(10), (Ellipsis,))),
        ],
        Ref(11),
    )
    text = graph.dumps()
    assert decode_graph(text) == graph == decode_graph(json.loads(text))
    pc, pr, rc, rr = _batch()
    expected = (-torch.nn.functional.logsigmoid(0.1 * ((pc - pr) - (rc - rr)))).clamp(min=-1.5)[1:] * 2
    torch.testing.assert_close(build_loss(text)(pc, pr, rc, rr, 0.1), expected)


def test_running_a_graph_never_writes_into_its_inputs():
    batch = _batch()
    copies = [t.clone() for t in batch]
    build_loss(_graph(_dpo_nodes(), Ref(5)))(*batch, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(batch, copies, strict=True))


def _json_with(**changes):
    data = _graph(_dpo_nodes(), Ref(5)).to_json()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "not a evopo-loss-graph"),
        ({"contract": "token-soup"}, "unknown loss contract"),
        ({"inputs": ROLES[:4]}, "inputs must start with"),
        ({"inputs": list(reversed(ROLES))}, "contract order"),
        ({"variants": []}, "at least one variant"),
        (
            {"variants": [{"batch": "many", "nodes": [], "output": {"input": "beta"}}]},
            '"any", or "many" and "one"',
        ),
        ({"extra": 1}, "exactly the keys"),
    ],
)
def test_malformed_top_level_is_refused(change, message):
    with pytest.raises(GraphError, match=message):
        decode_graph(_json_with(**change))


def _node_json(**node):
    data = _graph(_dpo_nodes(), Ref(5)).to_json()
    data["variants"][0]["nodes"].append(node if node["op"] == "guard" else {"kwargs": {}, **node})
    data["variants"][0]["output"] = {"node": 6}
    return data


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"op": "call_function", "target": "torch.save", "args": [{"node": 5}]}, "not an allowed operation"),
        ({"op": "call_method", "target": "add_", "args": [{"node": 5}, 1]}, "in-place methods"),
        ({"op": "call_method", "target": "exp", "args": [1.0]}, "needs a tensor"),
        ({"op": "getattr", "target": "grad", "args": [{"node": 5}]}, "attribute is not allowed"),
        ({"op": "call_function", "target": "torch.exp", "args": [{"node": 6}]}, "earlier node"),
        ({"op": "call_function", "target": "torch.exp", "args": [{"node": -1}]}, "earlier node"),
        ({"op": "call_function", "target": "torch.exp", "args": [{"input": "labels"}]}, "does not declare"),
        (
            {
                "op": "call_function",
                "target": "torch.exp",
                "args": [{"node": 5}],
                "kwargs": {"out": {"node": 0}},
            },
            "out=",
        ),
        (
            {"op": "call_function", "target": "F.relu", "args": [{"node": 5}], "kwargs": {"inplace": True}},
            "inplace",
        ),
        ({"op": "call_method", "target": "to", "args": [{"node": 5}, "cuda"]}, "string constant"),
        (
            {"op": "call_function", "target": "operator.eq", "args": [{"node": 5}, {"dtype": "float64"}]},
            "dtype",
        ),
        (
            {
                "op": "call_function",
                "target": "torch.exp",
                "args": [{"tensor": [1.0] * 65, "dtype": "float32"}],
            },
            "64",
        ),
        (
            {
                "op": "call_function",
                "target": "torch.exp",
                "args": [{"tensor": [[1.0], [1.0, 2.0]], "dtype": "float32"}],
            },
            "rectangular",
        ),
        ({"op": "call_function", "target": "torch.exp", "args": [2**60]}, "out of range"),
        (
            {"op": "call_function", "target": "torch.exp", "args": [{"code": "import os"}]},
            "unsupported argument",
        ),
        ({"op": "guard", "args": [{"node": 5}]}, "guard has the arguments"),
        ({"op": "exec", "target": "x", "args": []}, "unknown node op"),
        ({"op": "call_function", "target": "torch.exp", "args": [], "line": "7"}, "line must be"),
    ],
)
def test_tampered_nodes_are_refused(node, message):
    with pytest.raises(GraphError, match=message):
        decode_graph(_node_json(**node))


def test_dtype_values_are_only_conversion_arguments():
    dtype_node = {"op": "getattr", "target": "dtype", "args": [{"node": 5}]}
    data = _node_json(**dtype_node)
    data["variants"][0]["nodes"].append(
        {"op": "call_method", "target": "to", "args": [{"node": 5}, {"node": 6}], "kwargs": {}}
    )
    data["variants"][0]["output"] = {"node": 7}
    assert decode_graph(data)  # x.to(y.dtype) is fine
    data["variants"][0]["nodes"][-1] = {
        "op": "call_function",
        "target": "operator.mul",
        "args": [{"node": 5}, {"node": 6}],
        "kwargs": {},
    }
    with pytest.raises(GraphError, match="dtype"):
        decode_graph(data)


def test_size_limits():
    nodes = [
        Node("call_function", "operator.neg", (PC if i == 0 else Ref(i - 1),)) for i in range(MAX_NODES + 1)
    ]
    with pytest.raises(GraphError, match="nodes"):
        decode_graph(_graph(nodes, Ref(MAX_NODES)).to_json())
    with pytest.raises(GraphError, match="characters"):
        decode_graph(" " * (600 * 1024))


def test_guards_choose_and_check_variants():
    many = [
        Node("call_method", "numel", (PC,)),
        Node("call_function", "operator.gt", (Ref(0), 1)),
        Node("guard", "guard", (Ref(1), True)),
        Node("call_method", "std", (PC,)),
    ]
    one = [
        Node("call_method", "numel", (PC,)),
        Node("call_function", "operator.gt", (Ref(0), 1)),
        Node("guard", "guard", (Ref(1), False)),
        Node("call_function", "torch.zeros_like", (PC,)),
    ]
    graph = LossGraph(
        "sequence", tuple(ROLES), (Variant("many", tuple(many), Ref(3)), Variant("one", tuple(one), Ref(3)))
    )
    loss = build_loss(graph.dumps())
    batch = _batch(4)
    torch.testing.assert_close(loss(*batch, 0.1), batch[0].std())
    torch.testing.assert_close(loss(*_batch(1), 0.1), torch.zeros(1))
    with pytest.raises(GuardMismatch):
        run_variant(graph.variants[0], dict(zip(ROLES, [*_batch(1), 0.1], strict=True)))


def test_the_element_limit_stops_memory_bombs_before_they_allocate():
    nodes = [
        Node("call_method", "reshape", (PC, 1, -1)),
        Node("call_method", "expand", (Ref(0), 10**9, -1)),
        Node("call_method", "sum", (Ref(1),)),
    ]
    with pytest.raises(GraphRuntimeError, match="asks for more than"):
        build_loss(_graph(nodes, Ref(2)))(*_batch(), 0.1)
    outer = [Node("call_function", "torch.outer", (PC, PC))]
    with pytest.raises(GraphRuntimeError, match="produced 16 elements"):
        build_loss(_graph(outer, Ref(0)), max_elements=10)(*_batch(4), 0.1)


def test_runtime_errors_name_the_node_and_line():
    nodes = [
        Node("call_function", "torch.matmul", (PC, PR), line=3),
        Node("call_function", "torch.matmul", (Ref(0), RC), line=4),
    ]
    with pytest.raises(GraphRuntimeError) as info:
        build_loss(_graph(nodes, Ref(1)))(*_batch(), 0.1)
    assert (info.value.node, info.value.target, info.value.line) == (1, "torch.matmul", 4)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_calls_bind_inputs_by_contract_order():
    loss = build_loss(_graph(_dpo_nodes(), Ref(5)))
    batch = _batch()
    torch.testing.assert_close(
        loss(*batch[:2], reference_chosen_logps=batch[2], reference_rejected_logps=batch[3], beta=0.1),
        loss(*batch, 0.1),
    )
    with pytest.raises(TypeError, match="missing inputs"):
        loss(*batch)
    with pytest.raises(TypeError, match="unexpected"):
        loss(*batch, 0.1, labels=batch[0])
    with pytest.raises(TypeError, match="batch"):
        loss(torch.tensor(1.0), *batch[1:], 0.1)


def test_values_are_freed_after_their_last_use():
    nodes = [*_dpo_nodes(), Node("call_function", "torch.exp", (PC,))]  # node 6 is never used
    plan = release_plan(Variant("any", tuple(nodes), Ref(5)))
    assert plan == [[], [], [0, 1], [2], [3], [4], [6]]  # node 5 is the output: kept
