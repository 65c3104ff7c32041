"""compile_loss: validated source becomes a guarded callable; restricted globals and the audit guard hold."""

import builtins
import math

import pytest
import torch
import torch.nn.functional as F

from sandbox.audit import SandboxRefusal, guarded, refusal
from sandbox.compile import compile_loss, load_namespace
from sandbox.policy import PolicyError
from tests.sandbox.discopop_losses import ALL_LOSSES, LRML


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return [-torch.rand(6, generator=gen) * 50 for _ in range(4)]


def test_compiled_loss_matches_the_reference():
    pc, pr, rc, rr = _inputs()
    loss = compile_loss(ALL_LOSSES["sigmoid"])
    expected = -F.logsigmoid(0.1 * ((pc - pr) - (rc - rr)))
    torch.testing.assert_close(loss(pc, pr, rc, rr, 0.1), expected)
    assert loss.__name__ == "loss_fn"


def test_lrml_matches_its_formula():
    pc, pr, rc, rr = _inputs()
    logits = 0.1 * ((pc - pr) - (rc - rr))
    mod = torch.sigmoid(logits / 0.05)
    expected = -F.logsigmoid(logits) * (1 - mod) + torch.exp(-logits) * mod
    torch.testing.assert_close(compile_loss(LRML)(pc, pr, rc, rr, 0.1), expected)


def test_compile_refuses_policy_violations():
    with pytest.raises(PolicyError) as info:
        compile_loss("import os\ndef loss_fn(a, b, c, d, beta):\n    return a - b\n")
    assert info.value.violations[0].rule == "import"


def test_compile_needs_the_entry_function():
    with pytest.raises(PolicyError):
        compile_loss(ALL_LOSSES["sigmoid"], entry="other")
    source = ALL_LOSSES["sigmoid"].replace("def loss_fn", "def dpo")
    assert callable(compile_loss(source, entry="dpo"))


def test_restricted_globals_hold_even_without_the_policy():
    namespace = load_namespace("x = 1\n")
    builtin_names = set(namespace["__builtins__"])
    assert {"open", "eval", "exec", "getattr", "print"}.isdisjoint(builtin_names)
    assert namespace["torch"] is torch and namespace["F"] is F and namespace["math"] is math
    for source in ("import os", "from torch import save", "import torch.utils", "from . import x"):
        with pytest.raises(ImportError):
            load_namespace(source)
    with pytest.raises(NameError):
        load_namespace("open('/etc/hostname')")


def test_allowed_import_forms_bind_the_real_modules():
    namespace = load_namespace(
        "import torch\nimport math as m\nimport torch.nn.functional as G\nfrom torch.nn import functional\n"
        "from torch.nn.functional import logsigmoid\nfrom math import log\n"
    )
    assert namespace["G"] is F and namespace["functional"] is F and namespace["m"] is math
    assert namespace["logsigmoid"] is F.logsigmoid and namespace["log"] is math.log
    assert load_namespace("x = 1\n", restricted=False)["__builtins__"] is builtins


def test_guard_refuses_files_processes_and_network_only_inside(tmp_path):
    target = tmp_path / "out.txt"
    with guarded(), pytest.raises(SandboxRefusal):
        target.write_text("x")
    with guarded(), pytest.raises(SandboxRefusal):
        open("/etc/hostname").read()
    with guarded(), pytest.raises(SandboxRefusal):
        __import__("os").system("true")
    with guarded(), pytest.raises(SandboxRefusal):
        __import__("socket").socket()
    assert not target.exists()
    target.write_text("outside the guard")  # the process-wide hook is inert outside it
    assert target.read_text() == "outside the guard"


def test_guard_covers_the_compiled_call(tmp_path):
    """Whatever runs inside a compiled loss (here a callback passed in as beta) runs under the guard."""
    loss = compile_loss("def loss_fn(a, b, c, d, beta):\n    return beta()\n")
    target = tmp_path / "f"
    with pytest.raises(SandboxRefusal):
        loss(None, None, None, None, lambda: target.write_text("x"))
    assert not target.exists()
    assert loss(None, None, None, None, lambda: 3) == 3


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
