"""Classic sequence-level preference losses, written in the exact DiscoPOP contract so the sandbox can validate
their source like any LLM proposal. ``x`` below is the log-ratio margin
``(pi_c - pi_r) - (ref_c - ref_r)`` of summed completion log-probs."""

import torch
import torch.nn.functional as F


def sigmoid(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """DPO: ``-log sigmoid(beta * x)``. Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    return -F.logsigmoid(beta * logits)


def hinge(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """SLiC hinge: ``max(0, 1 - beta * x)``. Zhao et al. 2023, "SLiC-HF", Eq. 2 (with the DPO reference term)."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    return torch.relu(1 - beta * logits)


def ipo_sum(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """IPO on summed log-probs: ``(x - 1 / (2 * beta))^2``. Azar et al. 2023, "A General Theoretical Paradigm to
    Understand Learning from Human Preferences", Eq. 17 (beta plays the role of tau), as DiscoPOP's IPO baseline
    (and this registry's ``ipo`` until TRL parity) computed it. TRL's ``ipo`` (registry ``ipo``, in
    ``trainer.losses.trl_menu``) divides each log-ratio by its completion length first; the IPO authors confirmed to
    TRL that their paper's results use that normalised form. This unnormalised one keeps its own name for the
    DiscoPOP comparison."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    return (logits - 1 / (2 * beta)) ** 2


def spin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """SPIN, logistic: ``-log sigmoid(beta * x)`` with chosen = the real (SFT) answer, rejected = the answer the
    opponent generated, reference = the opponent (the iteration's starting checkpoint).
    Chen et al. 2024, "Self-Play Fine-Tuning Converts Weak Language Models to Strong Language Models", Eq. 4.4."""
    logits = (policy_chosen_logps - reference_chosen_logps) - (
        policy_rejected_logps - reference_rejected_logps
    )
    return -F.logsigmoid(beta * logits)


def spin_hinge(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """SPIN, hinge variant: ``max(0, 1 - beta * x)``; same roles as ``spin``. Chen et al. 2024, Sec. 4.1."""
    logits = (policy_chosen_logps - reference_chosen_logps) - (
        policy_rejected_logps - reference_rejected_logps
    )
    return torch.relu(1 - beta * logits)
