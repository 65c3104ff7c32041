"""Token-level DPO (TDPO). Zeng et al. 2024, "Token-level Direct Preference Optimization", Eqs. 17 (TDPO1) and
19 (TDPO2); reference code: Vance0124/Token-level-Direct-Preference-Optimization.

With ``m_c = sum_t (log pi - log ref)(chosen)``, ``m_r`` likewise, and the sequential KL
``D_c = sum_t KL(ref(.|x, y<t) || pi(.|x, y<t))`` over the chosen completion (``D_r`` for the rejected):

- TDPO1: ``-log sigmoid(beta * ((m_c - m_r) - (D_r - D_c)))``
- TDPO2: ``-log sigmoid(beta * ((m_c - m_r) - alpha * (D_r - sg(D_c))))``, stop-gradient on the chosen KL.

Token weights (from the granular format) weight every per-token term when present, which gives the granular
TDPO form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.losses.contract import LossInputs


def _weighted(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    scale = mask if weights is None else mask * weights
    return (values * scale).sum(-1)


def _margins(inputs: LossInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if inputs.chosen_kl is None or inputs.rejected_kl is None:
        raise ValueError("TDPO needs the per-token KL: the trainer computes it for losses declaring needs_kl")
    chosen = _weighted(
        inputs.policy_chosen_token_logps - inputs.reference_chosen_token_logps,
        inputs.chosen_mask,
        inputs.chosen_weights,
    )
    rejected = _weighted(
        inputs.policy_rejected_token_logps - inputs.reference_rejected_token_logps,
        inputs.rejected_mask,
        inputs.rejected_weights,
    )
    chosen_kl = _weighted(inputs.chosen_kl, inputs.chosen_mask, inputs.chosen_weights)
    rejected_kl = _weighted(inputs.rejected_kl, inputs.rejected_mask, inputs.rejected_weights)
    return chosen, rejected, chosen_kl, rejected_kl


def tdpo1(inputs: LossInputs, beta: float) -> torch.Tensor:
    """TDPO1: ``-log sigmoid(beta * ((m_c - m_r) - (D_r - D_c)))``."""
    chosen, rejected, chosen_kl, rejected_kl = _margins(inputs)
    return -F.logsigmoid(beta * ((chosen - rejected) - (rejected_kl - chosen_kl)))


def make_tdpo2(alpha: float = 0.5):
    """TDPO2 with weight ``alpha`` on the KL difference (paper default 0.5)."""

    def tdpo2(inputs: LossInputs, beta: float) -> torch.Tensor:
        chosen, rejected, chosen_kl, rejected_kl = _margins(inputs)
        return -F.logsigmoid(beta * ((chosen - rejected) - alpha * (rejected_kl - chosen_kl.detach())))

    return tdpo2


def granular_dpo(inputs: LossInputs, beta: float) -> torch.Tensor:
    """Granular (token-masked) DPO: ``-log sigmoid(beta * (sum_t w_c (log pi - log ref) - sum_t w_r (...)))``;
    the weights ``w`` are 1 inside the marked character span on the flagged side, 0 outside it, and 1 everywhere
    on the other side, so only the span carries the preference signal on the flagged response."""
    chosen = _weighted(
        inputs.policy_chosen_token_logps - inputs.reference_chosen_token_logps,
        inputs.chosen_mask,
        inputs.chosen_weights,
    )
    rejected = _weighted(
        inputs.policy_rejected_token_logps - inputs.reference_rejected_token_logps,
        inputs.rejected_mask,
        inputs.rejected_weights,
    )
    return -F.logsigmoid(beta * (chosen - rejected))
