"""compile_loss (source -> loss, traced in a sandbox child, rebuilt from the graph here) and the restricted
namespace the tracing child executes candidate source in."""

import builtins
import math

import pytest
import torch
import torch.nn.functional as F

from sandbox.audit import refusal
from sandbox.compile import LossRejected, compile_loss
from sandbox.interpreter import GraphLoss
from sandbox.namespace import TRACING_MATH, load_namespace
from sandbox.policy import PolicyError
from tests.sandbox.discopop_losses import ALL_LOSSES, LRML


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return [-torch.rand(6, generator=gen) * 50 for _ in range(4)]


def test_compiled_loss_is_a_graph_and_matches_the_reference(pool):
    pc, pr, rc, rr = _inputs()
    loss = compile_loss(ALL_LOSSES["sigmoid"], pool=pool)
    assert isinstance(loss, GraphLoss)
    torch.testing.assert_close(loss(pc, pr, rc, rr, 0.1), -F.logsigmoid(0.1 * ((pc - pr) - (rc - rr))))


def test_lrml_matches_its_formula(pool):
    pc, pr, rc, rr = _inputs()
    logits = 0.1 * ((pc - pr) - (rc - rr))
    mod = torch.sigmoid(logits / 0.05)
    expected = -F.logsigmoid(logits) * (1 - mod) + torch.exp(-logits) * mod
    torch.testing.assert_close(compile_loss(LRML, pool=pool)(pc, pr, rc, rr, 0.1), expected)


def test_compile_refuses_policy_violations(pool):
    with pytest.raises(PolicyError) as info:
        compile_loss("import os\ndef loss_fn(a, b, c, d, beta):\n    return a - b\n", pool=pool)
    assert info.value.violations[0].rule == "import"
    with pytest.raises(PolicyError):
        compile_loss(ALL_LOSSES["sigmoid"], entry="other", pool=pool)


def test_compile_refuses_what_cannot_be_traced(pool):
    source = "def loss_fn(a, b, c, d, beta):\n    if (a > b).all():\n        return a\n    return b\n"
    with pytest.raises(LossRejected, match=r"\[trace\] line 2: \[control-flow\]"):
        compile_loss(source, pool=pool)


def test_compile_takes_a_custom_entry(pool):
    source = ALL_LOSSES["sigmoid"].replace("def loss_fn", "def dpo")
    assert callable(compile_loss(source, entry="dpo", pool=pool))


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
