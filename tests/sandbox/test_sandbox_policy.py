"""The static policy: what it accepts (and the sandbox then traces), and the line and rule it reports for what it
refuses."""

import pytest

from sandbox.policy import MAX_SOURCE_CHARS, PolicyViolation, check_policy, format_violations
from tests.sandbox.discopop_losses import ALL_LOSSES

DPO_BODY = "    x = (pc - pr) - (rc - rr)\n    return -F.logsigmoid(beta * x)\n"


def _loss(body: str = DPO_BODY, header: str = "") -> str:
    return f"{header}\ndef loss_fn(pc, pr, rc, rr, beta):\n{body}"


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_reference_losses_pass(name):
    assert check_policy(ALL_LOSSES[name]) == ()


ACCEPTED = {
    "prebound-modules": _loss(),
    "import-aliases": _loss(
        header="import torch as t\nimport math as m\nimport torch.nn.functional as G"
    ).replace("F.logsigmoid", "G.logsigmoid"),
    "from-imports": _loss(
        header="from torch.nn import functional as F\nfrom math import log\nfrom torch import exp"
    ),
    "from-functional-import": _loss(
        "    return -logsigmoid(beta * ((pc - pr) - (rc - rr)))\n",
        "from torch.nn.functional import logsigmoid",
    ),
    "full-module-path": _loss("    return -torch.nn.functional.logsigmoid(beta * ((pc - pr) - (rc - rr)))\n"),
    "constants-and-helper": _loss(
        "    return helper(beta * ((pc - pr) - (rc - rr)))\n",
        "TAU = 0.05\nEPS = -1e-6 + 2 * 3\nSCALE = 10 ** -3\n\ndef helper(z, tau=TAU):\n"
        '    """A docstring."""\n    return -F.logsigmoid(z / tau) * (1 + 0 * SCALE)\n',
    ),
    "control-flow": _loss(
        "    total = 0.0\n    for k in range(3):\n        if k > 1:\n            break\n        total += k\n"
        "    while False:\n        pass\n    assert 0.1 > 0\n"
        "    x = torch.where(pc > pr, pc - pr, (pc - pr) * 2.0)\n"
        "    return torch.relu(1 - beta * x) + total\n"
    ),
    "lambdas-and-comprehensions": _loss(
        "    sq = lambda v: v ** 2\n    parts = [sq(v) for v in (pc, pr)]\n"
        "    d = {k: v for k, v in zip('ab', parts)}\n"
        "    return sum(parts) * 0 + (pc - pr - rc + rr - 1 / (2 * beta)) ** 2 + len(d) * 0\n"
    ),
    "tensor-methods": _loss(
        "    x = ((pc - pr) - (rc - rr)).float()\n    s = x.std() if x.numel() > 1 else x.sum() * 0\n"
        "    eps = torch.finfo(torch.float32).eps\n    y = x.clamp(min=-50.0).to(torch.float32).detach() * 0\n"
        "    return -F.logsigmoid(beta * x) + y + s * 0 + eps\n"
    ),
    "keyword-arguments": _loss(
        "    x = (pc - pr) - (rc - rr)\n"
        "    return F.binary_cross_entropy_with_logits(beta * x, torch.ones_like(x), reduction='none')\n"
    ),
    "fresh-augmented-assignment": _loss(
        "    x = (pc - pr) - (rc - rr)\n    loss = -F.logsigmoid(beta * x)\n    loss += 0.1 * torch.relu(-x)\n"
        "    total = torch.zeros_like(x)\n    total -= x\n    return loss + 0 * total\n"
    ),
    "constant-defaults": _loss(
        "    return helper(beta * ((pc - pr) - (rc - rr)))\n",
        "TAU = 0.5\n\ndef helper(z, tau=TAU, scale=-1.0, mode='none', pair=(1, 2), unused=None):\n"
        "    return -F.logsigmoid(z) * tau * -scale\n",
    ),
    "literal-fstring-and-walrus": _loss(
        '    label = f"{1}"\n    if (n := 2) > 1:\n        pass\n'
        "    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))\n"
    ),
}


@pytest.mark.parametrize("source", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepts_tensor_math(source):
    assert check_policy(source) == ()


# (source, expected first violation: line, rule)
REFUSED = {
    "os-import": (_loss(header="import os"), 1, "import"),
    "eval-in-body": (_loss("    y = eval('1')\n" + DPO_BODY), 3, "forbidden-name"),
    "attribute-on-value": (_loss("    y = pc.numpy()\n" + DPO_BODY), 3, "attribute"),
    "torch-attribute": (_loss("    torch.save(pc, 'f')\n" + DPO_BODY), 3, "attribute"),
    "dunder": (_loss("    y = pc.__class__\n" + DPO_BODY), 3, "dunder"),
    "monkeypatch": (_loss("    F.logsigmoid = torch.sigmoid\n" + DPO_BODY), 3, "assign-attribute"),
    "unknown-name": (_loss("    y = secrets\n" + DPO_BODY), 3, "unknown-name"),
    "module-level-code": (_loss(header="x = torch.ones(3)"), 1, "module-level"),
    "missing-entry": ("def other(pc, pr, rc, rr, beta):\n    return pc - pr\n", 1, "entry"),
    "syntax": ("def loss_fn(:\n", 1, "syntax"),
    "null-byte": ("def loss_fn(pc, pr, rc, rr, beta):\n    return pc\x00\n", 1, "syntax"),
    "rebinding-F": (_loss("    F = 3\n" + DPO_BODY), 3, "rebind-module"),
    "parameter-named-torch": ("def loss_fn(torch, pr, rc, rr, beta):\n    return pr\n", 1, "rebind-module"),
    "nonlocal": (_loss("    def inner():\n        nonlocal pc\n" + DPO_BODY), 4, "statement"),
    "raise": (_loss("    raise ValueError(pc)\n"), 3, "statement"),
    "string-format-method": (_loss("    y = '{}'.format(pc)\n" + DPO_BODY), 3, "string-format"),
    "async": (_loss(header="async def helper():\n    pass"), 1, "module-level"),
    "yield": (_loss("    yield pc\n"), 3, "expression"),
    "torch-nn": (_loss("    y = torch.nn.Linear(2, 2)\n" + DPO_BODY), 3, "attribute"),
    "dunder-import-alias": (_loss(header="import torch as __builtins__"), 1, "dunder"),
    "private-name": (_loss("    y = _C\n" + DPO_BODY), 3, "private"),
    "module-annotation": (_loss(header="TAU: float = 0.5"), 1, "module-level"),
    "mutable-default": ("def loss_fn(pc, pr, rc, rr, beta, seen=[]):\n" + DPO_BODY, 1, "default"),
    "out-keyword": (_loss("    y = torch.exp(pc, out=pc)\n" + DPO_BODY), 3, "in-place"),
    "augmented-parameter": (_loss("    pc *= 2\n" + DPO_BODY), 3, "in-place"),
    "augmented-view": (_loss("    y = pc.view(-1)\n    y += 1\n" + DPO_BODY), 4, "in-place"),
    "slice-assignment": (_loss("    y = pc * 1\n    y[0:2] = 0.0\n" + DPO_BODY), 4, "in-place"),
}


@pytest.mark.parametrize(("source", "line", "rule"), REFUSED.values(), ids=REFUSED.keys())
def test_reports_line_and_rule(source, line, rule):
    violations = check_policy(source)
    assert violations, "expected a violation"
    assert (violations[0].line, violations[0].rule) == (line, rule)


def test_size_limit():
    source = _loss("    y = 1\n" * (MAX_SOURCE_CHARS // 10) + DPO_BODY)
    assert [v.rule for v in check_policy(source)] == ["size"]


def test_custom_entry_name():
    source = _loss().replace("loss_fn", "sigmoid")
    assert check_policy(source, entry="sigmoid") == ()
    assert [v.rule for v in check_policy(source)] == ["entry"]


def test_every_violation_is_reported_once():
    source = _loss("    a = eval('1')\n    b = eval('2')\n    torch.exp = 1\n" + DPO_BODY, header="import os")
    violations = check_policy(source)
    assert [(v.line, v.rule) for v in violations] == [
        (1, "import"),
        (3, "forbidden-name"),
        (4, "forbidden-name"),
        (5, "assign-attribute"),
    ]
    assert len(set(violations)) == len(violations)


def test_violation_text_names_line_rule_and_fix():
    violation = PolicyViolation(3, "import", "import of 'os' refused")
    assert str(violation) == "line 3: [import] import of 'os' refused"
    assert format_violations((violation,)) == "policy: line 3: [import] import of 'os' refused"


@pytest.mark.parametrize("source", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_sources_also_run(sandbox_pool, source):
    """What the policy lets through must work with the restricted globals and importer of the sandbox."""
    result = sandbox_pool.execute(source)
    assert result.valid, result.error
