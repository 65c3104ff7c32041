"""The gradient unit tests: reference losses pass; each defect fails with a short, specific message."""

import pytest
import torch
import torch.nn.functional as F

from sandbox.compile import load_namespace
from sandbox.gradient_tests import CASES, LossCallError, make_inputs, run_gradient_tests
from tests.sandbox.discopop_losses import ALL_LOSSES


def _margin(pc, pr, rc, rr):
    return (pc - pr) - (rc - rr)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_reference_losses_pass(name):
    report = run_gradient_tests(load_namespace(ALL_LOSSES[name])["loss_fn"])
    assert report.passed, report.message


FIRST_CASE = "random"  # every defect below shows on the first case

# (loss_fn, test, detail the first failure must contain)
DEFECTS = {
    "reduced-to-scalar": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * _margin(pc, pr, rc, rr)).mean(),
        "shape",
        "expected shape (16,), got (); return one loss per example, do not reduce over the batch",
    ),
    "extra-dimension": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * _margin(pc, pr, rc, rr))[:, None],
        "shape",
        "expected shape (16,), got (16, 1)",
    ),
    "not-a-tensor": (lambda pc, pr, rc, rr, beta: 1.0, "output", "loss_fn returned float"),
    "integer": (lambda pc, pr, rc, rr, beta: (pc > pr).long(), "dtype", "dtype torch.int64"),
    "rewards-rejected": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(-beta * _margin(pc, pr, rc, rr)),
        "direction",
        "summed dL/d(policy_chosen_logps) is +",
    ),
    "detached": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * _margin(pc, pr, rc, rr)).detach(),
        "gradient",
        "the loss has no gradient with respect to the policy log-probs",
    ),
    "ignores-rejected": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - rc)),
        "gradient",
        "the loss does not depend on policy_rejected_logps",
    ),
    "flat": (
        lambda pc, pr, rc, rr, beta: torch.relu(-100.0 - beta * _margin(pc, pr, rc, rr)),
        "gradient",
        "all gradients are zero",
    ),
    "nan-gradient": (
        lambda pc, pr, rc, rr, beta: torch.sqrt((pc - pr) - (pc - pr)) - beta * _margin(pc, pr, rc, rr),
        "gradient",
        "the gradient with respect to policy_chosen_logps has nan/inf values",
    ),
}


@pytest.mark.parametrize(("loss_fn", "test", "detail"), DEFECTS.values(), ids=DEFECTS.keys())
def test_defects_fail_with_a_specific_message(loss_fn, test, detail):
    report = run_gradient_tests(loss_fn)
    assert not report.passed
    first = report.failures[0]
    assert (first.test, first.case) == (test, FIRST_CASE)
    assert detail in first.detail, first.detail
    assert report.message.startswith(f"{test}[{FIRST_CASE}")
    assert len(report.message) < 400


def test_overflow_shows_on_large_margins_only():
    report = run_gradient_tests(lambda pc, pr, rc, rr, beta: torch.exp(-_margin(pc, pr, rc, rr)))
    assert [(f.test, f.case) for f in report.failures] == [("finite", "large-magnitude")]
    assert "keep exp() arguments bounded" in report.message


def test_constant_loss_with_a_gradient_fails():
    report = run_gradient_tests(lambda pc, pr, rc, rr, beta: (pr - pr.detach()) - (pc - pc.detach()))
    assert [f.test for f in report.failures] == ["not_constant"]
    assert report.message.startswith("not_constant[all]: loss_fn returned 0 for every input")


def test_message_groups_cases_with_the_same_failure():
    report = run_gradient_tests(lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - rc)))
    assert report.message == (
        "gradient[random, random-bfloat16, large-magnitude, ties, ties-bfloat16]: "
        "the loss does not depend on policy_rejected_logps"
    )


def test_exceptions_name_the_inputs():
    def loss_fn(pc, pr, rc, rr, beta):
        if pc.dtype == torch.bfloat16:
            raise ZeroDivisionError("boom")
        return -F.logsigmoid(beta * _margin(pc, pr, rc, rr))

    with pytest.raises(LossCallError) as info:
        run_gradient_tests(loss_fn)
    assert info.value.case == "random-bfloat16"
    assert isinstance(info.value.cause, ZeroDivisionError)


def test_inputs_are_deterministic_and_as_described():
    for case in CASES:
        first, second = make_inputs(case), make_inputs(case)
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
        assert all(t.shape == (case.batch,) and t.dtype == case.dtype for t in first)
    ties = make_inputs(next(c for c in CASES if c.name == "ties"))
    assert torch.equal(ties[0], ties[1]) and torch.equal(ties[2], ties[3])
    large = make_inputs(next(c for c in CASES if c.name == "large-magnitude"))
    margin = 0.1 * _margin(*large)
    assert margin.abs().max() > 10 and large[2].abs().max() > 1000
    random = make_inputs(CASES[0])
    assert abs(_margin(*random).sum().item()) < 1e-3  # +/- pairs: the batch mean margin is zero
