"""Outside the sandbox child no candidate source runs: a loss is rebuilt from its stored graph alone.

Proved here at the sandbox API (tests/evo/test_graph_training.py proves it for the search's archive, job and
trainer): after validation the stored source is replaced by code that would write a canary file if it ever ran;
the loss rebuilt from the stored graph computes what the graph says, no file appears, and Python executes no code
object in this process meanwhile (no `exec` audit event; `compile` is only ever asked for a syntax tree, by the
policy). A graph that is tampered with is either refused, or computes exactly what the tampered graph says.
"""

import ast
import builtins
import copy
import json
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

from sandbox.graph import GraphError
from sandbox.interpreter import build_loss
from sandbox.validate import validate_source
from tests.security.attack_kit import loss_source

_RECORDING = threading.local()
_SEEN: list[str] = []


def _recorder(event: str, args: tuple) -> None:
    if getattr(_RECORDING, "on", False) and event in ("exec", "import"):
        _SEEN.append(event)


sys.addaudithook(_recorder)


class _NoCodeRuns:
    """Records exec/import audit events in this thread while active, and every call of `compile` that asks for
    more than a syntax tree (as "compile")."""

    def __enter__(self) -> list[str]:
        _SEEN.clear()
        self.compile = builtins.compile

        def checked_compile(source, filename, mode, flags=0, *args, **kwargs):
            if not flags & ast.PyCF_ONLY_AST:
                _SEEN.append("compile")
            return self.compile(source, filename, mode, flags, *args, **kwargs)

        builtins.compile = checked_compile
        _RECORDING.on = True
        return _SEEN

    def __exit__(self, *exc_info: object) -> None:
        _RECORDING.on = False
        builtins.compile = self.compile


def _batch(size: int = 9) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(size)
    return [-(torch.rand(size, generator=gen) * 80 + 5) for _ in range(4)]


def _dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))


@pytest.fixture(scope="module")
def stored(attack_pool):
    """An archive row as the search stores it: the source and its validated graph."""
    result = validate_source(loss_source(), pool=attack_pool)
    assert result.valid, result.error
    return {"source": loss_source(), "graph": json.dumps(result.graph)}


def test_tampering_with_the_stored_source_changes_nothing(stored, canary_dir):
    row = dict(stored)
    row["source"] = loss_source(header=f"open({str(canary_dir / 'pwned')!r}, 'w').write('ran')").replace(
        "-F.logsigmoid(beta * x)", "F.logsigmoid(beta * x)"
    )
    batch = _batch()
    with _NoCodeRuns() as seen:
        loss = build_loss(row["graph"])
        values = loss(*batch, 0.1)
    assert seen == []
    torch.testing.assert_close(values, _dpo(*batch, 0.1))
    assert not (canary_dir / "pwned").exists()


def test_a_tampered_graph_computes_what_it_says(stored):
    graph = json.loads(stored["graph"])
    nodes = graph["variants"][0]["nodes"]
    negation = next(n for n in nodes if n.get("target") == "operator.neg")
    negation["target"] = "operator.pos"  # -logsigmoid(...) becomes +logsigmoid(...): the reversed loss
    batch = _batch()
    torch.testing.assert_close(build_loss(graph)(*batch, 0.1), -_dpo(*batch, 0.1))


TAMPERING = {
    "unknown-function": lambda n: n[0].update(target="os.system"),
    "builtin-function": lambda n: n[0].update(target="builtins.eval"),
    "in-place-method": lambda n: n[0].update(op="call_method", target="add_"),
    "private-method": lambda n: n[0].update(op="call_method", target="__setitem__"),
    "out-keyword": lambda n: n[0].update(kwargs={"out": {"input": "policy_chosen_logps"}}),
    "forward-reference": lambda n: n[0].update(args=[{"node": 3}, {"node": 0}]),
    "self-reference": lambda n: n[1].update(args=[{"node": 1}, {"node": 0}]),
    "unknown-input": lambda n: n[0].update(args=[{"input": "secret"}, {"input": "beta"}]),
    "device-string": lambda n: n[1].update(op="call_method", target="to", args=[{"node": 0}, "cuda"]),
    "dtype-comparison": lambda n: n[1].update(target="operator.eq", args=[{"node": 0}, {"dtype": "float64"}]),
    "unknown-op": lambda n: n[0].update(op="import"),
    "huge-constant": lambda n: n[0].update(args=[{"tensor": [0.0] * 65, "dtype": "float32"}, 1]),
    "non-finite-literal": lambda n: n[0].update(args=[float("inf"), 1]),
    "extra-key": lambda n: n[0].update(code="import os"),
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_a_tampered_graph_outside_the_allow_list_is_refused(stored, tamper):
    graph = json.loads(stored["graph"])
    tamper(graph["variants"][0]["nodes"])
    with pytest.raises(GraphError):
        build_loss(graph)


def test_malformed_graphs_are_refused(stored):
    graph = json.loads(stored["graph"])
    for broken in ("not json", "[]", json.dumps({**graph, "format": "pickle"}), "{" * 10000):
        with pytest.raises(GraphError):
            build_loss(broken)
    too_many = copy.deepcopy(graph)
    too_many["variants"][0]["nodes"] *= 400
    with pytest.raises(GraphError):
        build_loss(too_many)
    cyclic = copy.deepcopy(graph)
    cyclic["variants"][0]["output"] = {"node": len(cyclic["variants"][0]["nodes"])}
    with pytest.raises(GraphError):
        build_loss(cyclic)


def test_validation_traces_in_the_sandbox_not_here(attack_pool):
    with _NoCodeRuns() as seen:
        result = validate_source(loss_source(), pool=attack_pool)
        loss = build_loss(result.graph)
    assert "exec" not in seen and "compile" not in seen
    batch = _batch()
    torch.testing.assert_close(loss(*batch, 0.1), _dpo(*batch, 0.1))
