"""The unit tests every sequence-level candidate loss must pass before it may reach a trainer.

Inputs are deterministic: random-looking log-probs, hard cases (large magnitudes, ties, a batch of one) and
bfloat16. Checks: a tensor of shape (batch,), finite values, finite not-all-zero gradients for the policy
log-probs, the direction test (on average over typical and large margins, descending the loss raises the
chosen log-prob and lowers the rejected one) and a loss that is not constant in its inputs. Each failure is
one short line written for an LLM to act on.

Two cases check less than everything, on purpose. At ties (every margin exactly zero, as at the first step
of training) only values and gradients must be finite and non-zero: DiscoPOP's LRML and AQL have a small
wrong-way bump at margin zero and are still good losses. A batch of one checks structure only (a (1,) tensor
with a gradient): a standard deviation over one example is undefined, and DiscoPOP's AQFL and DBAQL are NaN
there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_BETA = 0.1
MAX_REPORTED_FAILURES = 3
LossFn = Callable[..., object]


@dataclass(frozen=True)
class Case:
    """One input set (margins beta*x in [-spread, spread], log-probs of a given scale) and its checks."""

    name: str
    batch: int
    dtype: torch.dtype
    spread: float
    scale: float
    seed: int
    values: bool = True  # finite values and finite, not-all-zero gradients
    direction: bool = True


CASES: tuple[Case, ...] = (
    Case("random", 16, torch.float32, 3.0, 200.0, 1),
    Case("random-bfloat16", 16, torch.bfloat16, 3.0, 200.0, 2),
    Case("large-magnitude", 16, torch.float32, 25.0, 5000.0, 3),
    Case("ties", 8, torch.float32, 0.0, 100.0, 4, direction=False),
    Case("ties-bfloat16", 8, torch.bfloat16, 0.0, 100.0, 5, direction=False),
    Case("batch-of-1", 1, torch.float32, 0.5, 50.0, 6, values=False, direction=False),
)


@dataclass(frozen=True)
class Failure:
    """One failed check: which test, on which input case, and what was seen (with the fix, for an LLM)."""

    test: str
    case: str
    detail: str


@dataclass(frozen=True)
class GradientReport:
    """The outcome of the gradient tests: `failures` is empty when the loss passed."""

    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def message(self) -> str:
        """One line per distinct failure, naming every case it happened on, at most MAX_REPORTED_FAILURES."""
        cases: dict[tuple[str, str], list[str]] = {}
        for failure in self.failures:
            cases.setdefault((failure.test, failure.detail), []).append(failure.case)
        lines = [f"{test}[{', '.join(names)}]: {detail}" for (test, detail), names in cases.items()]
        more = len(lines) - MAX_REPORTED_FAILURES
        return "; ".join(lines[:MAX_REPORTED_FAILURES]) + (f" (+{more} more)" if more > 0 else "")


class LossCallError(Exception):
    """loss_fn raised while being called on one of the test cases."""

    def __init__(self, case: str, cause: BaseException) -> None:
        super().__init__(f"on the '{case}' inputs")
        self.case = case
        self.cause = cause


def make_inputs(case: Case, beta: float = DEFAULT_BETA) -> tuple[torch.Tensor, ...]:
    """(policy_chosen, policy_rejected, reference_chosen, reference_rejected) for the case.

    Margins come in +/- pairs so the batch mean margin is zero; reference log-probs are negative sums.
    """
    gen = torch.Generator().manual_seed(case.seed)
    half = (case.batch + 1) // 2
    z = torch.rand(half, generator=gen, dtype=torch.float64) * case.spread
    z = torch.cat([z, -z])[: case.batch] if case.batch > 1 else -z
    ref_chosen = -(0.1 + torch.rand(case.batch, generator=gen, dtype=torch.float64)) * case.scale
    if case.spread == 0.0:
        ref_rejected = ref_chosen.clone()
    else:
        ref_rejected = -(0.1 + torch.rand(case.batch, generator=gen, dtype=torch.float64)) * case.scale
    shift = torch.randn(case.batch, generator=gen, dtype=torch.float64) * case.scale * 0.05
    if case.spread == 0.0:
        shift = torch.zeros_like(shift)
    x = z / beta
    pol_chosen = ref_chosen + shift + x / 2
    pol_rejected = ref_rejected + shift - x / 2
    return tuple(t.to(case.dtype) for t in (pol_chosen, pol_rejected, ref_chosen, ref_rejected))


def call_loss(
    loss_fn: LossFn, case: Case, beta: float = DEFAULT_BETA
) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Call loss_fn on the case's inputs (policy log-probs require grad); exceptions become LossCallError."""
    pol_chosen, pol_rejected, ref_chosen, ref_rejected = make_inputs(case, beta)
    pol_chosen.requires_grad_(True)
    pol_rejected.requires_grad_(True)
    try:
        out = loss_fn(pol_chosen, pol_rejected, ref_chosen, ref_rejected, beta)
    except Exception as exc:
        raise LossCallError(case.name, exc) from exc
    return out, pol_chosen, pol_rejected


def run_gradient_tests(loss_fn: LossFn, beta: float = DEFAULT_BETA) -> GradientReport:
    """Run every case; raises LossCallError when loss_fn itself raises."""
    failures: list[Failure] = []
    outputs: list[torch.Tensor] = []
    for case in CASES:
        out, pol_chosen, pol_rejected = call_loss(loss_fn, case, beta)
        failure = _check_case(case, out, pol_chosen, pol_rejected)
        if failure is not None:
            failures.append(Failure(failure[0], case.name, failure[1]))
        elif case.values:
            outputs.append(out.detach().double())
    if not failures and _constant(outputs):
        value = f"{outputs[0][0].item():.4g}"
        detail = f"loss_fn returned {value} for every input; the loss must depend on the log-probs"
        failures.append(Failure("not_constant", "all", detail))
    return GradientReport(tuple(failures))


def _constant(outputs: list[torch.Tensor]) -> bool:
    values = torch.cat([o.flatten() for o in outputs])
    return bool((values == values[0]).all())


def _check_case(
    case: Case, out: object, pol_chosen: torch.Tensor, pol_rejected: torch.Tensor
) -> tuple[str, str] | None:
    """(test name, what was seen) for the first check the case fails, None when it passes."""
    if not isinstance(out, torch.Tensor):
        return "output", f"loss_fn returned {type(out).__name__}; return a tensor of shape (batch,)"
    if tuple(out.shape) != (case.batch,):
        hint = "; return one loss per example, do not reduce over the batch" if out.dim() == 0 else ""
        return "shape", f"expected shape ({case.batch},), got {tuple(out.shape)}{hint}"
    if not out.is_floating_point():
        return "dtype", f"the loss has dtype {out.dtype}; it must be a floating-point tensor"
    if not out.requires_grad:
        return "gradient", (
            "the loss has no gradient with respect to the policy log-probs; do not detach, use .item() "
            "or build it from constants"
        )
    if not case.values:
        return None
    bad = ~torch.isfinite(out.detach())
    if bad.any():
        first = int(bad.nonzero()[0])
        return "finite", (
            f"{int(bad.sum())} of {case.batch} losses are nan/inf (index {first}: {out[first].item()}); "
            "keep exp() arguments bounded, or use F.logsigmoid / F.softplus"
        )
    grads = torch.autograd.grad(out.sum(), [pol_chosen, pol_rejected], allow_unused=True)
    names = ("policy_chosen_logps", "policy_rejected_logps")
    for name, grad in zip(names, grads, strict=True):
        if grad is None:
            return "gradient", f"the loss does not depend on {name}"
        if not torch.isfinite(grad).all():
            return "gradient", f"the gradient with respect to {name} has nan/inf values"
    if not any(bool(g.any()) for g in grads):
        return "gradient", "all gradients are zero, so training would not move the policy"
    if not case.direction:
        return None
    grad_chosen, grad_rejected = (g.double().sum().item() for g in grads)
    if not grad_chosen < 0.0:
        return "direction", (
            f"summed dL/d(policy_chosen_logps) is {grad_chosen:+.3g}, must be < 0: the loss must fall as "
            "the chosen log-prob rises"
        )
    if not grad_rejected > 0.0:
        return "direction", (
            f"summed dL/d(policy_rejected_logps) is {grad_rejected:+.3g}, must be > 0: the loss must fall "
            "as the rejected log-prob falls"
        )
    return None
