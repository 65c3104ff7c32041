"""SPA self-refinement. Kim et al. 2025, "Spread Preference Annotation: Direct Preference Judgment for Efficient
LLM Alignment" (ICLR), Sec. 4.2: confidence-based label smoothing with de-coupled noise detection.

Per pair, the DPO margin ``z = beta * ((pi_c - ref_c) - (pi_r - ref_r))``. Noise detection uses the margin of the
logit-extrapolated model ``(1 + lam) * h_pi - lam * h_ref``; at sequence level its implicit-reward margin is
``z_ext = (1 + lam) * z``. Pairs whose ``z_ext`` falls below the ``percentile``-th percentile of a rolling window
of recent ``z_ext`` values are treated as likely mislabeled and get label smoothing ``alpha``:

    loss = -(1 - a) * log sigmoid(z) - a * log sigmoid(-z),   a = alpha * [z_ext < tau] * [progress >= warmup]

Paper defaults: alpha = 0.1, K = 10 (bottom 10%), lam = 1/2 at the first iteration; smoothing is off during the
first 20% of steps (warmup = 0.2)."""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

from trainer.losses.contract import LossInputs


class SelfRefinementLoss:
    def __init__(
        self, alpha: float = 0.1, percentile: float = 10.0, window: float = 512, lam: float = 0.5, warmup: float = 0.2
    ) -> None:
        if not 0 <= alpha < 0.5:
            raise ValueError(f"SPA alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha
        self.percentile = percentile
        self.lam = lam
        self.warmup = warmup
        self._window: deque[float] = deque(maxlen=int(window))
        self.last_smoothed_fraction = 0.0

    def __call__(self, inputs: LossInputs, beta: float) -> torch.Tensor:
        margin = beta * (
            (inputs.policy_chosen_logps - inputs.reference_chosen_logps)
            - (inputs.policy_rejected_logps - inputs.reference_rejected_logps)
        )
        extrapolated = ((1 + self.lam) * margin).detach().float()
        self._window.extend(extrapolated.cpu().tolist())
        threshold = torch.quantile(torch.tensor(list(self._window)), self.percentile / 100.0)
        active = inputs.progress >= self.warmup
        smoothing = (extrapolated.cpu() < threshold).to(margin.dtype).to(margin.device) * (self.alpha if active else 0.0)
        self.last_smoothed_fraction = float((smoothing > 0).float().mean())
        return -(1 - smoothing) * F.logsigmoid(margin) - smoothing * F.logsigmoid(-margin)
