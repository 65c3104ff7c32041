"""The gradient unit tests: reference losses pass on any draw; each defect fails with a short, specific message;
the inputs are fresh on every run and look like training inputs."""

import random
import re

import pytest
import torch
import torch.nn.functional as F

from sandbox.gradient_tests import CASES, LossCallError, draw_inputs, run_gradient_tests
from sandbox.namespace import load_namespace
from tests.sandbox.discopop_losses import ALL_LOSSES


def _margin(pc, pr, rc, rr):
    return (pc - pr) - (rc - rr)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_reference_losses_pass_on_many_draws(name):
    loss_fn = load_namespace(ALL_LOSSES[name])["loss_fn"]
    for seed in range(25):
        report = run_gradient_tests(loss_fn, seed=seed)
        assert report.passed, (seed, report.message)


FIRST_CASE = "random"  # every defect below shows on the first case

# (loss_fn, test, pattern the first failure's detail must match)
DEFECTS = {
    "reduced-to-scalar": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * _margin(pc, pr, rc, rr)).mean(),
        "shape",
        r"expected shape \(\d+,\), got \(\); return one loss per example, do not reduce over the batch",
    ),
    "extra-dimension": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * _margin(pc, pr, rc, rr))[:, None],
        "shape",
        r"expected shape \((\d+),\), got \(\1, 1\)",
    ),
    "not-a-tensor": (lambda pc, pr, rc, rr, beta: 1.0, "output", "the loss is not a tensor"),
    "integer": (lambda pc, pr, rc, rr, beta: (pc > pr).long(), "dtype", "dtype torch.int64"),
    "rewards-rejected": (
        lambda pc, pr, rc, rr, beta: -F.logsigmoid(-beta * _margin(pc, pr, rc, rr)),
        "direction",
        r"summed dL/d\(policy_chosen_logps\) is \+",
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
        r"the gradient with respect to policy_chosen_logps has nan/inf values",
    ),
}


@pytest.mark.parametrize(("loss_fn", "test", "pattern"), DEFECTS.values(), ids=DEFECTS.keys())
def test_defects_fail_with_a_specific_message(loss_fn, test, pattern):
    report = run_gradient_tests(loss_fn)
    assert not report.passed
    first = report.failures[0]
    assert (first.test, first.case) == (test, FIRST_CASE)
    assert re.search(pattern, first.detail), first.detail
    assert report.message.startswith(f"{test}[{FIRST_CASE}")
    assert len(report.message) < 400


def test_overflow_shows_on_large_margins():
    report = run_gradient_tests(lambda pc, pr, rc, rr, beta: torch.exp(-_margin(pc, pr, rc, rr)))
    assert ("finite", "large-magnitude") in [(f.test, f.case) for f in report.failures]
    assert "keep exp() arguments bounded" in report.message


def test_constant_loss_with_a_gradient_fails():
    report = run_gradient_tests(lambda pc, pr, rc, rr, beta: (pr - pr.detach()) - (pc - pc.detach()))
    assert [f.test for f in report.failures] == ["not_constant"]
    assert report.message.startswith("not_constant[all]: the loss is 0 for every input")


def test_message_groups_cases_with_the_same_failure():
    report = run_gradient_tests(lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - rc)))
    assert report.message == (
        "gradient[random, random-bfloat16, random-float64, large-magnitude, large-batch, ties, ties-bfloat16]: "
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


def test_every_run_draws_fresh_inputs():
    seen = []
    report = run_gradient_tests(
        lambda pc, pr, rc, rr, beta: seen.append(pc.shape[0]) or -F.logsigmoid(beta * (pc - pr))
    )
    again = run_gradient_tests(
        lambda pc, pr, rc, rr, beta: seen.append(pc.shape[0]) or -F.logsigmoid(beta * (pc - pr))
    )
    assert report.passed and again.passed and report.seed != again.seed
    assert seen[: len(CASES)] != seen[len(CASES) :]  # batch sizes differ (with overwhelming probability)


def test_inputs_look_like_training_inputs():
    rng = random.Random(7)
    for case in CASES:
        for _ in range(20):
            inputs = draw_inputs(case, rng)
            tensors = inputs.tensors()
            assert case.batches[0] <= inputs.batch <= case.batches[1]
            assert case.betas[0] <= inputs.beta <= case.betas[1]
            assert all(t.shape == (inputs.batch,) and t.dtype == case.dtype for t in tensors)
            assert all(bool((t < 0).all()) for t in tensors)  # summed log-probs are negative
            margin = _margin(*(t.double() for t in tensors)) * inputs.beta
            if case.spread == 0.0:
                assert torch.equal(tensors[0], tensors[1]) and torch.equal(tensors[2], tensors[3])
            elif case.dtype != torch.bfloat16:
                assert bool((margin != 0).all())
                if inputs.batch > 1:  # spread around a small random mean, not a mean of exactly zero
                    assert abs(margin.mean().item()) <= 0.2 + 1e-3


def test_the_same_seed_draws_the_same_inputs():
    first = draw_inputs(CASES[0], random.Random(3))
    second = draw_inputs(CASES[0], random.Random(3))
    assert all(torch.equal(a, b) for a, b in zip(first.tensors(), second.tensors(), strict=True))
    assert first.beta == second.beta
