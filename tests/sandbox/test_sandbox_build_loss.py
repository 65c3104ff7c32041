"""Source -> graph in a sandbox child -> `build_loss(graph)` here: the loss the trainer, retrain and the report run,
and the restricted namespace the tracing child executes candidate source in."""

import builtins
import json
import math

import pytest
import torch
import torch.nn.functional as F

from sandbox.audit import refusal
from sandbox.interpreter import GraphLoss, build_loss
from sandbox.namespace import TRACING_MATH, load_namespace
from sandbox.validate import validate_source
from tests.sandbox.discopop_losses import ALL_LOSSES, LRML


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return [-torch.rand(6, generator=gen) * 50 for _ in range(4)]


def _built(source: str, pool, entry: str = "loss_fn") -> GraphLoss:
    """The loss rebuilt from the graph of a validated source, after a round trip through JSON text (as stored)."""
    result = validate_source(source, entry=entry, pool=pool)
    assert result.valid, result.error
    return build_loss(json.dumps(result.graph))


def test_the_built_loss_is_a_graph_and_matches_the_reference(sandbox_pool):
    pc, pr, rc, rr = _inputs()
    loss = _built(ALL_LOSSES["sigmoid"], sandbox_pool)
    assert isinstance(loss, GraphLoss)
    torch.testing.assert_close(loss(pc, pr, rc, rr, 0.1), -F.logsigmoid(0.1 * ((pc - pr) - (rc - rr))))


def test_lrml_matches_its_formula(sandbox_pool):
    pc, pr, rc, rr = _inputs()
    logits = 0.1 * ((pc - pr) - (rc - rr))
    mod = torch.sigmoid(logits / 0.05)
    expected = -F.logsigmoid(logits) * (1 - mod) + torch.exp(-logits) * mod
    torch.testing.assert_close(_built(LRML, sandbox_pool)(pc, pr, rc, rr, 0.1), expected)


def test_no_graph_for_policy_violations(sandbox_pool):
    result = validate_source(
        "import os\ndef loss_fn(a, b, c, d, beta):\n    return a - b\n", pool=sandbox_pool
    )
    assert (result.stage, result.graph) == ("policy", None) and "import" in result.error
    result = validate_source(ALL_LOSSES["sigmoid"], entry="other", pool=sandbox_pool)
    assert (result.stage, result.graph) == ("policy", None)


def test_no_graph_for_what_cannot_be_traced(sandbox_pool):
    source = "def loss_fn(a, b, c, d, beta):\n    if (a > b).all():\n        return a\n    return b\n"
    result = validate_source(source, pool=sandbox_pool)
    assert (result.stage, result.graph) == ("trace", None)
    assert result.error.startswith("line 2: [control-flow]"), result.error


def test_a_custom_entry_is_traced(sandbox_pool):
    source = ALL_LOSSES["sigmoid"].replace("def loss_fn", "def dpo")
    pc, pr, rc, rr = _inputs()
    torch.testing.assert_close(
        _built(source, sandbox_pool, entry="dpo")(pc, pr, rc, rr, 0.1),
        -F.logsigmoid(0.1 * ((pc - pr) - (rc - rr))),
    )


def test_restricted_globals_hold_even_without_the_policy():
    namespace = load_namespace("x = 1\n")
    builtin_names = set(namespace["__builtins__"])
    assert {"open", "eval", "exec", "getattr", "print"}.isdisjoint(builtin_names)
    assert namespace["torch"] is torch and namespace["F"] is F and namespace["math"] is TRACING_MATH
    for source in ("import os", "from torch import save", "import torch.utils", "from . import x"):
        with pytest.raises(ImportError):
            load_namespace(source)
    with pytest.raises(NameError):
        load_namespace("open('/etc/hostname')")


def test_allowed_import_forms_bind_the_real_modules():
    namespace = load_namespace(
        "import torch\nimport math as m\nimport torch.nn.functional as G\nfrom torch.nn import functional\n"
        "from torch.nn.functional import logsigmoid\nfrom math import log, pi\n"
    )
    assert namespace["G"] is F and namespace["functional"] is F and namespace["m"] is TRACING_MATH
    assert namespace["logsigmoid"] is F.logsigmoid and namespace["log"](1.0) == 0.0
    assert namespace["pi"] == math.pi
    assert load_namespace("x = 1\n", restricted=False)["__builtins__"] is builtins


def test_refusal_rules():
    assert refusal("open", ("/x/module.py", "r", 0)) is None  # lazy imports keep working
    assert refusal("open", ("/x/module.py", "w", 0)) is not None
    assert refusal("open", ("/root/.env", "r", 0)) is not None
    assert refusal("open", (b"/x/lib.so", None, 0)) is None
    assert refusal("open", ("/x/lib.so", None, 0o101)) is not None  # O_WRONLY | O_CREAT
    for event in (
        "os.system",
        "subprocess.Popen",
        "socket.connect",
        "os.fork",
        "os.kill",
        "ctypes.dlopen",
        "os.putenv",
        "shutil.rmtree",
        "gc.get_objects",
        "resource.setrlimit",
    ):
        assert refusal(event, ()) is not None, event
    for event in ("import", "exec", "compile", "os.listdir", "object.__getattr__"):
        assert refusal(event, ()) is None, event
