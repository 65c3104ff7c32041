"""Tracing (as the sandbox's tracing child does it): what becomes a graph, and what is refused, with its rule and
candidate line."""

import random

import pytest
import torch
import torch.nn.functional as F

from sandbox.contract import SEQUENCE
from sandbox.interpreter import build_loss
from sandbox.namespace import load_namespace
from sandbox.tracer import TraceRejected, trace_loss

HEADER = "def loss_fn(pc, pr, rc, rr, beta):\n    x = (pc - pr) - (rc - rr)\n"


def _trace(body: str, header: str = ""):
    return trace_loss(load_namespace(f"{header}\n{HEADER}{body}")["loss_fn"], SEQUENCE, random.Random(0))


def _batch(size: int = 6):
    gen = torch.Generator().manual_seed(size)
    return [-torch.rand(size, generator=gen) * 30 for _ in range(4)]


# (body, rule, line) -- HEADER's margin is on line 3 (after the blank header line)
REFUSED = {
    "if-on-values": ("    if (x > 0).all():\n        x = -x\n    return x\n", "control-flow", 4),
    "if-on-dtype": ("    if pc.dtype == torch.float64:\n        x = -x\n    return x\n", "control-flow", 4),
    "if-on-beta": ("    if beta > 0.2:\n        x = -x\n    return x\n", "control-flow", 4),
    "while-on-values": ("    while x.sum() > 0:\n        x = x - 1\n    return x\n", "control-flow", 4),
    "and-of-tensors": ("    y = (x > 0) and (x < 1)\n    return x\n", "control-flow", 4),
    "builtin-max": ("    return max(x, -x)\n", "control-flow", 4),
    "if-on-batch-size": ("    if x.shape[0] == 8:\n        x = -x\n    return x\n", "batch-size", 4),
    "if-on-large-batch": ("    if len(x) < 100:\n        x = -x\n    return x\n", "batch-size", 4),
    "iteration": ("    return sum(v for v in x)\n", "iteration", 4),
    "in-place-method": ("    x.mul_(2)\n    return x\n", "in-place", 4),
    "not-allowed-method": ("    return x.cumsum(0).numpy()\n", "operation", 4),
    "not-allowed-attribute": ("    return x * x.requires_grad\n", "attribute", 4),
    "not-allowed-function": ("    return torch.erfinv(x).new_ones(1)\n", "operation", 4),
    "constant-output": ("    return torch.ones(3)\n", "output", None),
    "big-constant": ("    return x.sum() + torch.tensor([0.0] * 100)\n", "constant", 4),
    "out-keyword": ("    return torch.exp(x, out=pc)\n", "graph", 4),
}


@pytest.mark.parametrize(("body", "rule", "line"), REFUSED.values(), ids=REFUSED.keys())
def test_refusals_name_rule_and_line(body, rule, line):
    with pytest.raises(TraceRejected) as info:
        _trace(body)
    assert (info.value.rule, info.value.line) == (rule, line), str(info.value)


def test_python_around_the_tensors_simply_runs():
    body = (
        "    total = 0.0\n    for k in range(3):\n        total = total + k * math.log(2.0)\n"
        "    parts = [helper(v, i) for i, v in enumerate((x, -x))]\n"
        "    return parts[0] + 0 * parts[1] + total / len(x) + math.log(beta) * 0\n"
    )
    graph = _trace(body, header="def helper(v, i):\n    return -F.logsigmoid(v * (i + 1))")
    loss = build_loss(graph)
    pc, pr, rc, rr = _batch()
    x = (pc - pr) - (rc - rr)
    expected = -F.logsigmoid(x) + 3 * 0.6931471805599453 / 6
    torch.testing.assert_close(loss(pc, pr, rc, rr, 0.1), expected)
    targets = {n.target for n in graph.variants[0].nodes}
    assert "math.log" in targets and "operator.getitem" in targets  # math on beta, len() -> shape[0]


def test_a_batch_of_one_special_case_becomes_two_guarded_variants():
    graph = _trace("    spread = x.std() if x.numel() > 1 else x.sum() * 0\n    return x + spread\n")
    assert [v.batch for v in graph.variants] == ["many", "one"]
    assert sum(n.op == "guard" for n in graph.variants[0].nodes) == 1
    loss = build_loss(graph)
    for size in (1, 2, 9):
        pc, pr, rc, rr = _batch(size)
        x = (pc - pr) - (rc - rr)
        expected = x + (x.std() if size > 1 else 0)
        torch.testing.assert_close(loss(pc, pr, rc, rr, 0.1), expected)


def test_a_size_condition_true_for_every_batch_needs_one_variant():
    graph = _trace("    if x.numel() > 0:\n        x = x * 2\n    return x\n")
    assert [v.batch for v in graph.variants] == ["any"]


def test_parameters_bind_to_roles_and_defaults_are_frozen():
    source = "def loss_fn(a, b, c, d, beta, tau=0.5, mode='none'):\n    return -F.logsigmoid(beta * ((a - b) - (c - d)) / tau)\n"
    graph = trace_loss(load_namespace(source)["loss_fn"], SEQUENCE)
    assert graph.inputs == tuple(s.role for s in SEQUENCE.required)
    pc, pr, rc, rr = _batch()
    torch.testing.assert_close(
        build_loss(graph)(pc, pr, rc, rr, 0.1), -F.logsigmoid(0.2 * ((pc - pr) - (rc - rr)))
    )
    with pytest.raises(TraceRejected, match="stateful"):
        trace_loss(load_namespace(source.replace("tau=0.5", "tau=[0.5]"))["loss_fn"], SEQUENCE)
    with pytest.raises(TraceRejected, match="signature"):
        trace_loss(load_namespace("def loss_fn(a, b, beta):\n    return a - b\n")["loss_fn"], SEQUENCE)


def test_an_optional_input_of_a_contract_is_bound_by_name():
    source = "def loss_fn(a, b, c, d, beta, chosen_lengths=None):\n    return -F.logsigmoid(beta * (a / chosen_lengths - b))\n"
    graph = trace_loss(load_namespace(source)["loss_fn"], SEQUENCE)
    assert graph.inputs[-1] == "chosen_lengths"
    roles = {n.args[1].role for n in graph.variants[0].nodes if n.target == "operator.truediv"}
    assert roles == {"chosen_lengths"}
    pc, pr, rc, rr = _batch()
    counts = torch.arange(1.0, 7.0)
    expected = -F.logsigmoid(0.1 * (pc / counts - pr))
    torch.testing.assert_close(build_loss(graph)(pc, pr, rc, rr, 0.1, chosen_lengths=counts), expected)


def test_state_kept_across_calls_is_refused():
    calls = [0]

    def loss_fn(pc, pr, rc, rr, beta):
        calls[0] += 1
        return (pc - pr) * calls[0]

    with pytest.raises(TraceRejected, match="different graph on a second call"):
        trace_loss(loss_fn, SEQUENCE)


def test_a_nan_constant_is_the_same_graph_on_every_call():
    """NaN != NaN in Python: two traces of one loss with a NaN constant are still the same computation, so the
    loss reaches training (where the divergence guard records it) instead of being called stateful."""
    graph = _trace("    return x * float('nan')\n")
    assert torch.isnan(build_loss(graph)(*_batch(), 0.1)).all()
