"""The gradient unit tests every loss must pass, on inputs a loss cannot recognise.

Each run draws fresh inputs (seeded from os.urandom unless a seed is given): for every case a random batch
size in the case's range, a random beta, and log-probs like those of training (negative summed log-probs of
completions, policy = reference shifted per example, margins beta*x spread around a random small mean, never
all zero except in the tie cases). Cases cover float32 (the training dtype), bfloat16 and float64, large
magnitudes, a large batch, ties and a batch of one (the direction is checked where the batch averages it:
float32 and float64 batches of 8 or more; bfloat16 resolves summed log-probs too coarsely for it). Checks: output shape (batch,), floating dtype, a
gradient, finite values and gradients, not all gradients zero, the direction (summed dL/d(policy_chosen) < 0
and dL/d(policy_rejected) > 0) and not constant across cases. A loss that reads the completion lengths (`lengths=True`) also gets them: token
counts consistent with the log-probs (|reference log-prob| / a per-token NLL between 0.2 and 2.5, 1 to 4096).
The token-level contract's tests are in `sandbox.token_tests`.

In the sandbox these run on the loss rebuilt from its traced graph, never on the candidate's Python.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_REPORTED_FAILURES = 3
LossFn = Callable[..., object]


@dataclass(frozen=True)
class Case:
    """One kind of input: batch sizes, dtype, spread of the scaled margins beta*x (0: ties), reference
    log-prob magnitudes, beta range, and which checks apply."""

    name: str
    batches: tuple[int, int]
    dtype: torch.dtype
    spread: float
    scale: tuple[float, float]
    betas: tuple[float, float] = (0.05, 0.5)
    values: bool = True  # finite values and finite, not-all-zero gradients
    direction: bool = True


CASES: tuple[Case, ...] = (
    Case("random", (8, 64), torch.float32, 1.5, (20.0, 400.0)),
    Case("random-bfloat16", (2, 64), torch.bfloat16, 1.5, (20.0, 400.0), direction=False),
    Case("random-float64", (8, 64), torch.float64, 1.5, (20.0, 400.0)),
    Case("large-magnitude", (8, 64), torch.float32, 10.0, (1000.0, 5000.0), betas=(0.05, 0.15)),
    Case("large-batch", (256, 1024), torch.float32, 1.5, (20.0, 400.0)),
    Case("ties", (2, 32), torch.float32, 0.0, (20.0, 400.0), direction=False),
    Case("ties-bfloat16", (2, 32), torch.bfloat16, 0.0, (20.0, 400.0), direction=False),
    Case("batch-of-1", (1, 1), torch.float32, 1.0, (20.0, 400.0), values=False, direction=False),
)


@dataclass(frozen=True)
class Inputs:
    """One drawn input set (float64 before the cast to the case's dtype)."""

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    reference_chosen: torch.Tensor
    reference_rejected: torch.Tensor
    beta: float
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return self.policy_chosen.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.policy_chosen, self.policy_rejected, self.reference_chosen, self.reference_rejected)


def draw_inputs(case: Case, rng: random.Random) -> Inputs:
    """Inputs for the case, in its dtype: realistic log-probs, non-zero margins around a random small mean."""
    batch = rng.randint(*case.batches)
    beta = round(rng.uniform(*case.betas), 4)
    gen = torch.Generator().manual_seed(rng.getrandbits(62))
    low, high = case.scale
    ref_chosen = -(low + torch.rand(batch, generator=gen, dtype=torch.float64) * (high - low))
    ref_rejected = -(low + torch.rand(batch, generator=gen, dtype=torch.float64) * (high - low))
    shift = torch.randn(batch, generator=gen, dtype=torch.float64) * low * 0.1
    if case.spread == 0.0:
        ref_rejected = ref_chosen.clone()
        z = torch.zeros(batch, dtype=torch.float64)
    else:
        z = torch.randn(batch, generator=gen, dtype=torch.float64) * case.spread
        if batch > 1:  # a random small batch mean, so that the mean margin says nothing about the test
            z = z - z.mean() + rng.uniform(-0.2, 0.2)
        z = torch.where(z.abs() < 1e-3, torch.full_like(z, 1e-3), z)
    x = z / beta
    pol_chosen = ref_chosen + shift + x / 2
    pol_rejected = ref_rejected + shift - x / 2
    # log-probs are negative: move all four down together where needed (the margin is unchanged)
    top = torch.stack([pol_chosen, pol_rejected, ref_chosen, ref_rejected]).amax(0)
    down = torch.clamp(top + 0.5, min=0.0)
    tensors = [(t - down).to(case.dtype) for t in (pol_chosen, pol_rejected, ref_chosen, ref_rejected)]
    lengths = [_token_counts(t - down, gen).to(case.dtype) for t in (ref_chosen, ref_rejected)]
    return Inputs(*tensors, beta=beta, chosen_lengths=lengths[0], rejected_lengths=lengths[1])


def _token_counts(logps: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Completion lengths consistent with summed log-probs: |logp| / a per-token NLL in [0.2, 2.5]."""
    per_token = 0.2 + 2.3 * torch.rand(logps.shape, generator=gen, dtype=torch.float64)
    return torch.clamp(torch.round(logps.abs() / per_token), 1.0, 4096.0)


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
    seed: int

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
    """The loss raised while being called on one of the test cases."""

    def __init__(self, case: str, cause: BaseException) -> None:
        super().__init__(f"on the '{case}' inputs")
        self.case = case
        self.cause = cause


def call_loss(
    loss_fn: LossFn, inputs: Inputs, case: str, lengths: bool = False
) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Call the loss on the inputs (policy log-probs require grad; the completion lengths by keyword when
    `lengths`); exceptions become LossCallError."""
    pol_chosen = inputs.policy_chosen.clone().requires_grad_(True)
    pol_rejected = inputs.policy_rejected.clone().requires_grad_(True)
    extra = {"chosen_lengths": inputs.chosen_lengths, "rejected_lengths": inputs.rejected_lengths}
    try:
        out = loss_fn(
            pol_chosen,
            pol_rejected,
            inputs.reference_chosen,
            inputs.reference_rejected,
            inputs.beta,
            **(extra if lengths else {}),
        )
    except Exception as exc:
        raise LossCallError(case, exc) from exc
    return out, pol_chosen, pol_rejected


def run_gradient_tests(loss_fn: LossFn, seed: int | None = None, lengths: bool = False) -> GradientReport:
    """Run every case on freshly drawn inputs (with the completion lengths when `lengths`); raises LossCallError
    when the loss itself raises."""
    seed = new_seed() if seed is None else seed
    rng = random.Random(seed)
    failures: list[Failure] = []
    outputs: list[torch.Tensor] = []
    for case in CASES:
        inputs = draw_inputs(case, rng)
        out, pol_chosen, pol_rejected = call_loss(loss_fn, inputs, case.name, lengths)
        try:
            failure = check_case(case, inputs.batch, out, (pol_chosen, pol_rejected))
        except RuntimeError as exc:  # autograd through the loss failed
            raise LossCallError(case.name, exc) from exc
        if failure is not None:
            failures.append(Failure(failure[0], case.name, failure[1]))
        elif case.values:
            outputs.append(out.detach().double())
    return GradientReport(tuple(failures + constant_failure(failures, outputs)), seed)


def new_seed() -> int:
    return int.from_bytes(os.urandom(8), "little")


def constant_failure(failures: list[Failure], outputs: list[torch.Tensor]) -> list[Failure]:
    """The not-constant check over all cases' outputs (only when every case passed)."""
    if failures or not outputs:
        return []
    values = torch.cat([o.flatten() for o in outputs])
    if not bool((values == values[0]).all()):
        return []
    detail = f"the loss is {values[0].item():.4g} for every input; it must depend on the log-probs"
    return [Failure("not_constant", "all", detail)]


SEQUENCE_NAMES = ("policy_chosen_logps", "policy_rejected_logps")


def check_case(
    case: Case,
    batch: int,
    out: object,
    policy: tuple[torch.Tensor, torch.Tensor],
    names: tuple[str, str] = SEQUENCE_NAMES,
    masks: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[str, str] | None:
    """(test name, what was seen) for the first check the case fails, None when it passes. `policy` are the
    chosen and rejected policy inputs (named `names`); with `masks` (per-token inputs) only the gradients on
    completion tokens count for the not-all-zero and direction checks (padding does not train)."""
    if not isinstance(out, torch.Tensor):
        return "output", "the loss is not a tensor; return a tensor of shape (batch,)"
    if tuple(out.shape) != (batch,):
        hint = "; return one loss per example, do not reduce over the batch" if out.dim() == 0 else ""
        return "shape", f"expected shape ({batch},), got {tuple(out.shape)}{hint}"
    if not out.is_floating_point():
        return "dtype", f"the loss has dtype {out.dtype}; it must be a floating-point tensor"
    if not out.requires_grad:
        return "gradient", (
            "the loss has no gradient with respect to the policy log-probs; do not detach it or build it from "
            "constants"
        )
    if not case.values:
        return None
    bad = ~torch.isfinite(out.detach())
    if bad.any():
        return "finite", (
            f"{int(bad.sum())} of {batch} losses are nan/inf; keep exp() arguments bounded, or use F.logsigmoid "
            "/ F.softplus"
        )
    grads = list(torch.autograd.grad(out.sum(), list(policy), allow_unused=True))
    for name, grad in zip(names, grads, strict=True):
        if grad is None:
            return "gradient", f"the loss does not depend on {name}"
        if not torch.isfinite(grad).all():
            return "gradient", f"the gradient with respect to {name} has nan/inf values"
    if masks is not None:
        grads = [g * m for g, m in zip(grads, masks, strict=True)]
    if not any(bool(g.any()) for g in grads):
        return "gradient", "all gradients are zero, so training would not move the policy"
    if not case.direction:
        return None
    grad_chosen, grad_rejected = (g.double().sum().item() for g in grads)
    if not grad_chosen < 0.0:
        return "direction", (
            f"summed dL/d({names[0]}) is {grad_chosen:+.3g}, must be < 0: the loss must fall as the "
            "chosen log-prob rises"
        )
    if not grad_rejected > 0.0:
        return "direction", (
            f"summed dL/d({names[1]}) is {grad_rejected:+.3g}, must be > 0: the loss must fall as "
            "the rejected log-prob falls"
        )
    return None
