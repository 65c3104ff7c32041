"""Novelty keys, both taken from the traced graph: equivalent losses written differently collide, different
losses do not, the fingerprint is float32 behaviour, and the canonical form is what the graph computes."""

import itertools

import pytest
import torch

from sandbox.contract import SEQUENCE
from sandbox.interpreter import build_loss
from sandbox.namespace import load_namespace
from sandbox.novelty import _quantize, _quantize_column, canonical_form, fingerprint
from sandbox.tracer import trace_loss
from tests.sandbox.discopop_losses import ALL_LOSSES

HEADER = "def loss_fn(pc, pr, rc, rr, beta):\n    x = (pc - pr) - (rc - rr)\n"


def _src(expression: str) -> str:
    return f"{HEADER}    return {expression}\n"


def _graph(source: str):
    return trace_loss(load_namespace(source)["loss_fn"], SEQUENCE)


def _fp(source: str) -> str:
    return fingerprint(build_loss(_graph(source)))


def _form(source: str) -> str | None:
    return canonical_form(_graph(source))


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
        assert _form(a) is not None
        assert _form(a) == _form(b)


@pytest.mark.parametrize(("a", "b"), [p[1:] for p in DISTINCT], ids=[p[0] for p in DISTINCT])
def test_distinct_losses_do_not_collide(a, b):
    assert _fp(a) != _fp(b)
    form_a, form_b = _form(a), _form(b)
    assert form_a is None or form_b is None or form_a != form_b


def test_reference_losses_are_pairwise_distinct():
    keys = {name: _fp(source) for name, source in ALL_LOSSES.items()}
    for (a, key_a), (b, key_b) in itertools.combinations(keys.items(), 2):
        assert key_a != key_b, (a, b)


def test_canonical_forms():
    assert _form(ALL_LOSSES["sigmoid"]) == "log(1 + exp(-beta*margin))"
    assert _form(ALL_LOSSES["hinge"]) == "Max(0, -beta*margin + 1)"
    assert _form(ALL_LOSSES["ipo"]) == "margin**2 - margin/beta + 1/(4*beta**2)"
    for name in ("aql", "aqfl", "dbaql"):  # batch statistics have no closed form
        assert _form(ALL_LOSSES[name]) is None
    assert _form(_src("x[0:1] * 0 + x")) is None  # indexing is not modelled


def test_the_canonical_form_is_what_python_computed():
    """Constant conditions are decided by Python while tracing; sympy never sees them."""
    forged = _src("-F.logsigmoid(beta * x) if 0.1 + 0.2 == 0.3 else torch.relu(1 - beta * x)")
    assert _form(forged) == "Max(0, -beta*margin + 1)"
    assert _fp(forged) == _fp(_src("torch.relu(1 - beta * x)"))


def test_the_fingerprint_is_float32_behaviour():
    """A factor that is exactly 1 in float32 (1e-60 underflows) and 1.01 in float64 changes nothing."""
    clone = _src("-F.logsigmoid(beta * x) * (1 + torch.ones_like(x) * 1e-30 * 1e-30 * 1e30 * 1e28)")
    assert _fp(clone) == _fp(_src("-F.logsigmoid(beta * x)"))
    grid = [-torch.rand(5, dtype=torch.float64) * 50 for _ in range(4)]
    assert not torch.allclose(
        build_loss(_graph(clone))(*grid, 0.1), build_loss(_graph(_src("-F.logsigmoid(beta * x)")))(*grid, 0.1)
    )


def test_rounding_is_robust_to_float_noise():
    assert _quantize(0.123456) == "1.23e-01"
    assert _quantize(0.123456 * (1 + 1e-7)) == _quantize(0.123456 * (1 - 1e-7))
    assert _quantize(1e-12) == _quantize(-1e-12) == _quantize(0.0) == _quantize(-0.0) == "0"
    assert _quantize(float("nan")) == "nan" and _quantize(float("-inf")) == "-inf"
    assert _quantize_column([2.0, 1e-5, -3e-4]) == "2.00e+00,0,-3.00e-04"  # below 1e-4 of the largest: noise
    base = _src("-F.logsigmoid(beta * x)")
    noisy = _src("-F.logsigmoid(beta * x) * (1 + 1e-12) + 1e-13")
    assert _fp(base) == _fp(noisy)


def test_sandbox_fingerprints_match_in_process_ones(sandbox_pool):
    for name in ("sigmoid", "lrml", "aqfl"):
        result = sandbox_pool.execute(ALL_LOSSES[name])
        assert result.fingerprint == _fp(ALL_LOSSES[name])
        assert result.canonical_form == _form(ALL_LOSSES[name])


def test_slow_canonical_form_is_abandoned_not_fatal(sandbox_pool):
    """sympy gets a time budget in the child: past it the candidate stays valid, without a canonical form."""
    slow = _src(
        "-F.logsigmoid(beta * x) + 1e-30 * (torch.sigmoid(pc) + torch.sigmoid(pr) + torch.sigmoid(rc)"
        " + torch.sigmoid(rr) + beta) ** 30"
    )
    result = sandbox_pool.execute(slow)
    assert result.valid, result.error
    assert result.canonical_form is None
    assert result.fingerprint == _fp(_src("-F.logsigmoid(beta * x)"))  # the 1e-30 term is below the rounding
