"""Novelty keys: equivalent losses written differently collide, different losses do not."""

import itertools

import pytest

from sandbox.compile import load_namespace
from sandbox.novelty import _quantize, canonical_form, fingerprint
from tests.sandbox.discopop_losses import ALL_LOSSES

HEADER = "def loss_fn(pc, pr, rc, rr, beta):\n    x = (pc - pr) - (rc - rr)\n"


def _src(expression: str) -> str:
    return f"{HEADER}    return {expression}\n"


def _fp(source: str) -> str:
    return fingerprint(load_namespace(source)["loss_fn"])


LRML_REWRITTEN = """
TAU = 0.05


def blend(z):
    return torch.sigmoid(z / TAU)


def loss_fn(pc, pr, rc, rr, beta):
    z = beta * (pc - rc) - beta * (pr - rr)
    w = blend(z)
    return w * torch.exp(-z) + (1 - w) * F.softplus(-z)
"""

# (id, a, b, whether the canonical forms must match too)
EQUIVALENT = [
    (
        "logsigmoid-vs-log1p-exp",
        _src("-F.logsigmoid(beta * x)"),
        _src("torch.log1p(torch.exp(-beta * x))"),
        True,
    ),
    ("logsigmoid-vs-softplus", _src("-F.logsigmoid(beta * x)"), _src("F.softplus(-beta * x)"), True),
    (
        "logsigmoid-vs-log-sigmoid",
        _src("-F.logsigmoid(beta * x)"),
        _src("-torch.log(torch.sigmoid(beta * x))"),
        True,
    ),
    (
        "regrouped-margin",
        _src("-F.logsigmoid(beta * x)"),
        _src("-F.logsigmoid(beta * (pc - rc) - beta * (pr - rr))"),
        True,
    ),
    ("relu-vs-clamp", _src("torch.relu(1 - beta * x)"), _src("torch.clamp(1 - beta * x, min=0.0)"), True),
    (
        "ipo-expanded",
        _src("(x - 1 / (2 * beta)) ** 2"),
        _src("x ** 2 - x / beta + 1 / (4 * beta ** 2)"),
        True,
    ),
    ("exp-vs-reciprocal", _src("torch.exp(-beta * x)"), _src("1 / torch.exp(beta * x)"), True),
    (
        "cell-rearranged",
        ALL_LOSSES["cell"],
        _src("(torch.exp(-beta * x) - F.logsigmoid(beta * x)) / 2"),
        True,
    ),
    ("linear", _src("-beta * x"), _src("beta * (pr - pc) + beta * (rc - rr)"), True),
    ("sigmoid-symmetry", _src("torch.sigmoid(-beta * x)"), _src("1 - torch.sigmoid(beta * x)"), False),
    ("tanh-vs-sigmoid", _src("-torch.tanh(beta * x)"), _src("-(2 * torch.sigmoid(2 * beta * x) - 1)"), False),
    (
        "padll-as-where",
        ALL_LOSSES["padll"],
        _src("torch.where(x < 0, 0.45, 0.9) * -F.logsigmoid(beta * x)"),
        False,
    ),
    ("lrml-rewritten", ALL_LOSSES["lrml"], LRML_REWRITTEN, False),
    (
        "mean-batch-statistic",
        _src("(x - x.mean()) ** 2 - beta * x"),
        _src("(x - x.sum() / x.numel()) ** 2 - beta * x"),
        False,
    ),
]

DISTINCT = [
    ("dpo-vs-hinge", ALL_LOSSES["sigmoid"], ALL_LOSSES["hinge"]),
    ("dpo-vs-ipo", ALL_LOSSES["sigmoid"], ALL_LOSSES["ipo"]),
    ("beta-vs-2beta", _src("-F.logsigmoid(beta * x)"), _src("-F.logsigmoid(2 * beta * x)")),
    ("dpo-vs-doubled", _src("-F.logsigmoid(beta * x)"), _src("-2 * F.logsigmoid(beta * x)")),
    ("lrml-vs-cell", ALL_LOSSES["lrml"], ALL_LOSSES["cell"]),
    ("aql-vs-aqfl", ALL_LOSSES["aql"], ALL_LOSSES["aqfl"]),
    ("padll-vs-scaled-dpo", ALL_LOSSES["padll"], _src("-0.9 * F.logsigmoid(beta * x)")),
    ("sigmoid-vs-exp", _src("-F.logsigmoid(beta * x)"), _src("torch.exp(-beta * x)")),
    ("hinge-vs-squared-hinge", _src("torch.relu(1 - beta * x)"), _src("torch.relu(1 - beta * x) ** 2")),
    ("with-vs-without-reference", _src("-F.logsigmoid(beta * x)"), _src("-F.logsigmoid(beta * (pc - pr))")),
    ("dbaql-vs-cell", ALL_LOSSES["dbaql"], ALL_LOSSES["cell"]),
    ("pfl-vs-hinge", ALL_LOSSES["pfl"], ALL_LOSSES["hinge"]),
    ("hinge-margins", _src("torch.relu(1 - beta * x)"), _src("torch.relu(0.5 - beta * x)")),
]


def test_enough_pairs():
    assert len(EQUIVALENT) >= 10 and len(DISTINCT) >= 10


@pytest.mark.parametrize(("a", "b", "same_form"), [p[1:] for p in EQUIVALENT], ids=[p[0] for p in EQUIVALENT])
def test_equivalent_losses_collide(a, b, same_form):
    assert _fp(a) == _fp(b)
    if same_form:
        assert canonical_form(a) is not None
        assert canonical_form(a) == canonical_form(b)


@pytest.mark.parametrize(("a", "b"), [p[1:] for p in DISTINCT], ids=[p[0] for p in DISTINCT])
def test_distinct_losses_do_not_collide(a, b):
    assert _fp(a) != _fp(b)
    form_a, form_b = canonical_form(a), canonical_form(b)
    assert form_a is None or form_b is None or form_a != form_b


def test_reference_losses_are_pairwise_distinct():
    keys = {name: _fp(source) for name, source in ALL_LOSSES.items()}
    for (a, key_a), (b, key_b) in itertools.combinations(keys.items(), 2):
        assert key_a != key_b, (a, b)


def test_canonical_forms():
    assert canonical_form(ALL_LOSSES["sigmoid"]) == "log(1 + exp(-beta*margin))"
    assert canonical_form(ALL_LOSSES["hinge"]) == "Max(0, -beta*margin + 1)"
    assert canonical_form(ALL_LOSSES["ipo"]) == "margin**2 - margin/beta + 1/(4*beta**2)"
    for name in ("aql", "aqfl", "dbaql"):  # batch statistics have no closed form
        assert canonical_form(ALL_LOSSES[name]) is None
    assert canonical_form(_src("sum(v for v in x)")) is None
    assert canonical_form("def loss_fn(a, b, c, d, beta):\n    return 2 ** 10 ** 10\n") is None
    assert canonical_form("not python") is None


def test_rounding_is_robust_to_float_noise():
    assert _quantize(0.123456) == "1.235e-01"
    assert _quantize(0.123456 * (1 + 1e-12)) == _quantize(0.123456 * (1 - 1e-12))
    assert _quantize(1e-12) == _quantize(-1e-12) == _quantize(0.0) == _quantize(-0.0) == "0"
    assert _quantize(float("nan")) == "nan" and _quantize(float("-inf")) == "-inf"
    base = _src("-F.logsigmoid(beta * x)")
    noisy = _src("-F.logsigmoid(beta * x) * (1 + 1e-12) + 1e-13")
    assert _fp(base) == _fp(noisy)


def test_sandbox_fingerprints_match_in_process_ones(pool):
    for name in ("sigmoid", "lrml", "aqfl"):
        result = pool.execute(ALL_LOSSES[name])
        assert result.fingerprint == _fp(ALL_LOSSES[name])
        assert result.canonical_form == canonical_form(ALL_LOSSES[name])


def test_slow_canonical_form_is_abandoned_not_fatal(pool):
    """sympy gets a time budget in the child: past it the candidate stays valid, without a canonical form."""
    slow = _src(
        "-F.logsigmoid(beta * x) + 1e-30 * (torch.sigmoid(pc) + torch.sigmoid(pr) + torch.sigmoid(rc)"
        " + torch.sigmoid(rr) + beta) ** 30"
    )
    result = pool.execute(slow)
    assert result.valid, result.error
    assert result.canonical_form is None
    assert result.fingerprint == _fp(_src("-F.logsigmoid(beta * x)"))  # the 1e-30 term is below the rounding
