"""The gradient unit tests of the token-level contract (`sandbox.contract.TOKEN`), on fresh random inputs.

Each case draws a batch of completions of random lengths (padded to the longest: masks 1 on completion tokens,
0 after, and 0 in every per-token tensor there, as the trainer gives them), per-token reference log-probs
like a language model's (a per-token NLL between 0.2 and 2.5 per example), and policy log-probs that move
every completion token by the same amount, so that the summed log-ratio margin is `x = z / beta` with the
scaled margins `z` spread around a small random mean (as in `sandbox.gradient_tests`). The per-token KL
inputs, when the loss reads them, are `(policy - reference)^2 / 2` on completion tokens (its second-order
value), 0 on padding.

Checks, on the loss rebuilt from the graph: output shape (batch,), floating dtype, a gradient, finite values
and gradients; on completion tokens, not all gradients zero and the direction (the summed dL/d(policy
chosen token log-probs) < 0, the rejected > 0: raising the chosen tokens' log-probs lowers the loss); padding
invariance (more padding columns leave every example's loss unchanged: the padded length depends on the
other examples of a batch); and not constant across cases.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from sandbox.contract import KL_ROLES, TOKEN
from sandbox.gradient_tests import (
    Case,
    Failure,
    GradientReport,
    LossCallError,
    LossFn,
    check_case,
    constant_failure,
    new_seed,
)

TOKEN_NAMES = ("policy_chosen_token_logps", "policy_rejected_token_logps")
PADDING_TOLERANCE = (1e-5, 1e-6)  # rtol, atol in float64


@dataclass(frozen=True)
class TokenCase:
    """A `Case` (whose `scale` is here the range of the per-token NLL of the reference) plus the range of
    completion lengths and whether the padding check applies."""

    case: Case
    lengths: tuple[int, int]
    padding: bool = False


TOKEN_CASES: tuple[TokenCase, ...] = (
    TokenCase(Case("random", (8, 32), torch.float32, 1.5, (0.2, 2.5)), (1, 48)),
    TokenCase(Case("random-bfloat16", (2, 32), torch.bfloat16, 1.5, (0.2, 2.5), direction=False), (1, 48)),
    TokenCase(Case("random-float64", (8, 32), torch.float64, 1.5, (0.2, 2.5)), (1, 48), padding=True),
    TokenCase(Case("long", (4, 8), torch.float32, 1.5, (0.2, 2.5)), (200, 600)),
    TokenCase(Case("large-batch", (128, 256), torch.float32, 1.5, (0.2, 2.5)), (1, 12)),
    TokenCase(Case("ties", (2, 16), torch.float32, 0.0, (0.2, 2.5), direction=False), (1, 24)),
    TokenCase(
        Case("batch-of-1", (1, 1), torch.float32, 1.0, (0.2, 2.5), values=False, direction=False), (1, 24)
    ),
)


def draw_token_inputs(token_case: TokenCase, rng: random.Random) -> dict[str, object]:
    """Inputs of the token contract keyed by role, in the case's dtype (KL included)."""
    case = token_case.case
    batch = rng.randint(*case.batches)
    beta = round(rng.uniform(*case.betas), 4)
    gen = torch.Generator().manual_seed(rng.getrandbits(62))
    low, high = token_case.lengths
    lengths = [torch.randint(low, high + 1, (batch,), generator=gen) for _ in range(2)]
    if case.spread == 0.0:
        lengths[1] = lengths[0].clone()
    width = int(max(int(t.max()) for t in lengths))
    positions = torch.arange(width)
    masks = [(positions[None, :] < t[:, None]).double() for t in lengths]
    nll = case.scale[0] + torch.rand(batch, 1, generator=gen, dtype=torch.float64) * (
        case.scale[1] - case.scale[0]
    )
    reference = [-(nll * torch.rand(batch, width, generator=gen, dtype=torch.float64) * 2) for _ in range(2)]
    if case.spread == 0.0:
        reference[1] = reference[0].clone()
        z = torch.zeros(batch, dtype=torch.float64)
    else:
        z = torch.randn(batch, generator=gen, dtype=torch.float64) * case.spread
        if batch > 1:
            z = z - z.mean() + rng.uniform(-0.2, 0.2)
        z = torch.where(z.abs() < 1e-3, torch.full_like(z, 1e-3), z)
    x = z / beta
    shift = torch.randn(batch, 1, generator=gen, dtype=torch.float64) * 0.05
    policy = [
        reference[0] + shift + (x / 2 / lengths[0].double())[:, None],
        reference[1] + shift - (x / 2 / lengths[1].double())[:, None],
    ]
    inputs: dict[str, object] = {}
    for side, index in (("chosen", 0), ("rejected", 1)):
        mask = masks[index]
        inputs[f"policy_{side}_token_logps"] = (policy[index] * mask).to(case.dtype)
        inputs[f"reference_{side}_token_logps"] = (reference[index] * mask).to(case.dtype)
        inputs[f"{side}_mask"] = mask.to(case.dtype)
        inputs[f"{side}_kl"] = ((policy[index] - reference[index]) ** 2 / 2 * mask).to(case.dtype)
    inputs["beta"] = beta
    return inputs


def _call(loss_fn: LossFn, inputs: dict[str, object], kl: bool, case: str) -> object:
    required = [inputs[spec.role] for spec in TOKEN.required]
    extra = {role: inputs[role] for role in KL_ROLES} if kl else {}
    try:
        return loss_fn(*required, **extra)
    except Exception as exc:
        raise LossCallError(case, exc) from exc


def _padded(inputs: dict[str, object], columns: int) -> dict[str, object]:
    """The same inputs with `columns` more padding positions at the end of every per-token tensor."""
    out = dict(inputs)
    for spec in TOKEN.inputs:
        value = inputs[spec.role]
        if spec.per_token and isinstance(value, torch.Tensor):
            out[spec.role] = torch.nn.functional.pad(value, (0, columns))
    return out


def _padding_failure(
    loss_fn: LossFn, inputs: dict[str, object], out: torch.Tensor, kl: bool, case: str, columns: int
) -> tuple[str, str] | None:
    again = _call(loss_fn, _padded(inputs, columns), kl, case)
    if not isinstance(again, torch.Tensor) or again.shape != out.shape:
        return "padding", "the loss has another shape when the batch has more padding"
    rtol, atol = PADDING_TOLERANCE
    if not torch.allclose(
        again.detach().double(), out.detach().double(), rtol=rtol, atol=atol, equal_nan=True
    ):
        return "padding", (
            f"{columns} more padding columns changed the loss; mask every per-token term with chosen_mask / "
            "rejected_mask (padding holds 0) and normalise by the mask's sum, not by the tensor's width"
        )
    return None


def run_token_tests(loss_fn: LossFn, seed: int | None = None, kl: bool = False) -> GradientReport:
    """Run every token case on freshly drawn inputs (the per-token KL by keyword when `kl`); raises
    LossCallError when the loss itself raises."""
    seed = new_seed() if seed is None else seed
    rng = random.Random(seed)
    failures: list[Failure] = []
    outputs: list[torch.Tensor] = []
    for token_case in TOKEN_CASES:
        case = token_case.case
        inputs = draw_token_inputs(token_case, rng)
        policy = tuple(inputs[name].clone().requires_grad_(True) for name in TOKEN_NAMES)
        called = {**inputs, **dict(zip(TOKEN_NAMES, policy, strict=True))}
        out = _call(loss_fn, called, kl, case.name)
        masks = (inputs["chosen_mask"], inputs["rejected_mask"])
        try:
            failure = check_case(case, policy[0].shape[0], out, policy, TOKEN_NAMES, masks)
            if failure is None and token_case.padding:
                failure = _padding_failure(loss_fn, inputs, out, kl, case.name, rng.randint(1, 9))
        except RuntimeError as exc:
            raise LossCallError(case.name, exc) from exc
        if failure is not None:
            failures.append(Failure(failure[0], case.name, failure[1]))
        elif case.values:
            outputs.append(out.detach().double())
    return GradientReport(tuple(failures + constant_failure(failures, outputs)), seed)
