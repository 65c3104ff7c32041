"""SPA self-refinement. Kim et al. 2025, "Spread Preference Annotation: Direct Preference Judgment for Efficient
LLM Alignment" (ICLR), Sec. 4.2: confidence-based label smoothing with de-coupled noise detection, as the published
code computes it (kingdy2002/SPA, its fork of TRL, ``trl/trl/trainer/dpo_trainer.py``, commit 38553eb):

1. Noise detection uses the logit-extrapolated model: per token, ``mix_logits = mix * policy_logits + (1 - mix) *
   reference_logits`` with ``mix = 1 + lam`` (lines 1115-1116, ``mix`` = the ``decouple_denoising`` option),
   ``log_softmax`` over the vocabulary, the labels' log-probs summed over the completion (lines 1118-1133). The
   trainer computes these log-probs (``LossInputs.extrapolated_*_token_logps``, detached) because the spec
   declares ``extrapolation_param="lam"``. The mixed margin is
   ``z_mix = beta * ((mix_c - mix_r) - (ref_c - ref_r))`` (lines 895-905, 979).
2. A pair is confident when ``z_mix > tau`` (line 918). ``tau`` starts at 0 (line 195) and is updated after every
   batch from the last ``window`` = 50 batch means of ``z_mix`` (the ``deque(maxlen=50)`` of line 387, appended in
   ``compute_loss``, lines 1276-1278, the mean stored at line 1152): sorted ascending, ``k = int(window * threshold)``,
   ``tau = (m[k] + m[k + 1]) / 2`` (``confidence_update``, lines 1443-1451), once the window is full.
3. The loss (``loss_type="distill"``, lines 915-928) smooths the labels of the pairs that are not confident:
   ``-(1 - a + a p) log sigmoid(z) - (a - a p) log sigmoid(-z)`` with ``z = beta * ((pi_c - ref_c) - (pi_r -
   ref_r))``, ``p = [z_mix > tau]``, and ``a = alpha`` once ``step >= warmup * max_steps``, 0 before.

Defaults: ``alpha = 0.1`` and ``threshold = 0.1`` (the code's ``refine_stragth`` and ``self_refine_threshold``,
``alignment-handbook/src/alignment/configs.py`` lines 252-263), ``window = 50`` and ``warmup = 0.2`` (hard-coded
there), ``lam = 0.5`` (the paper's lambda = 1/2 of the first iteration; the code's ``decouple_denoising`` default 1
is ``lam = 0``)."""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

from trainer.losses.contract import LossInputs


class SelfRefinementLoss:
    def __init__(
        self,
        alpha: float = 0.1,
        threshold: float = 0.1,
        window: float = 50,
        lam: float = 0.5,
        warmup: float = 0.2,
    ) -> None:
        if not 0 <= alpha < 0.5:
            raise ValueError(f"SPA alpha must be in [0, 0.5), got {alpha}")
        if int(window) != window or not 0 <= int(window * threshold) + 1 < window:
            raise ValueError(
                f"SPA needs an integer window with int(window * threshold) + 1 < window, got {window}"
            )
        self.alpha = alpha
        self.threshold = threshold
        self.lam = lam
        self.warmup = warmup
        self._batch_margins: deque[float] = deque(maxlen=int(window))
        self.confidence = 0.0
        self.last_smoothed_fraction = 0.0

    def __call__(self, inputs: LossInputs, beta: float) -> torch.Tensor:
        if inputs.extrapolated_chosen_token_logps is None or inputs.extrapolated_rejected_token_logps is None:
            raise ValueError(
                "SPA needs the extrapolated log-probs: the trainer gives them to specs with extrapolation_param"
            )
        reference_margin = inputs.reference_chosen_logps - inputs.reference_rejected_logps
        margin = beta * ((inputs.policy_chosen_logps - inputs.policy_rejected_logps) - reference_margin)
        mixed_chosen = (inputs.extrapolated_chosen_token_logps * inputs.chosen_mask).sum(-1)
        mixed_rejected = (inputs.extrapolated_rejected_token_logps * inputs.rejected_mask).sum(-1)
        mixed_margin = (beta * ((mixed_chosen - mixed_rejected) - reference_margin)).detach()
        confident = (mixed_margin > self.confidence).to(margin.dtype)
        alpha = self.alpha if inputs.progress >= self.warmup else 0.0
        self.last_smoothed_fraction = float((1 - confident).mean()) if alpha > 0 else 0.0
        losses = -F.logsigmoid(margin) * (1 - alpha + alpha * confident) - F.logsigmoid(-margin) * (
            alpha - alpha * confident
        )
        self._update_confidence(float(mixed_margin.float().mean()))
        return losses

    def _update_confidence(self, batch_mean: float) -> None:
        self._batch_margins.append(batch_mean)
        if len(self._batch_margins) == self._batch_margins.maxlen:
            ordered = sorted(self._batch_margins)
            low = int(len(ordered) * self.threshold)
            self.confidence = (ordered[low] + ordered[low + 1]) / 2
