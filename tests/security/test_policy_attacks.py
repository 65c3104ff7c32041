"""Attacks the static policy must refuse before anything runs: each is a working DPO loss plus one attack."""

import pytest

from sandbox.validate import validate_source
from tests.security.attack_kit import loss_source

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
