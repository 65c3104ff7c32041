"""The losses discovered by DiscoPOP (Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with
and for Large Language Models", Table 1 / Appendix E; reference code: luchris429/DiscoPOP ``gpo.py``).

Each is written in the sequence-level contract. One deliberate change: the batch statistics of AQFL and DBAQL
(std, var) are defined as 0 for a batch of one, where the published code returns NaN. ``x = (pi_c - pi_r) - (ref_c - ref_r)`` and ``l = beta * x``."""

import torch
import torch.nn.functional as F


def discopop(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    tau=0.05,
):
    """LRML / DiscoPOP: ``(1 - s) * -log sigmoid(l) + s * exp(-l)`` with ``s = sigmoid(l / tau)``, tau = 0.05."""
    logits = beta * (
        (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    )
    modulation = torch.sigmoid(logits / tau)
    return -F.logsigmoid(logits) * (1 - modulation) + torch.exp(-logits) * modulation


def padll(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """PADLL: ``0.9 * (1 - 0.5 * [x < 0]) * -log sigmoid(beta * x)`` (mismatched pairs get half the weight)."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    mismatches = (logits < 0).float()
    adaptive_decay = 0.9 * (1 - 0.5 * mismatches)
    return adaptive_decay * -F.logsigmoid(beta * logits)


def aqfl(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """AQFL: ``b * -log sigmoid(l) + (1 - b) * relu(1 - l)`` with ``b = sigmoid(0.1 * |l/0.05 - q|)`` and the
    batch-adaptive quantile ``q = std(l/0.05) * mean(sigmoid(-l/0.05))``, moved 5% toward ``sigmoid(mean(l/0.05))``."""
    logits = beta * (
        (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    )
    scaled = logits / 0.05
    spread = scaled.std() if scaled.numel() > 1 else scaled.sum() * 0  # published code: NaN at batch 1
    quantile = spread * torch.sigmoid(-scaled).mean()
    quantile = quantile + 0.05 * (torch.sigmoid(scaled.mean()) - quantile)
    blend = torch.sigmoid(0.1 * (scaled - quantile).abs())
    return blend * -F.logsigmoid(logits) + (1 - blend) * torch.relu(1 - logits)


def aql(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """AQL: ``w * -log sigmoid(l) + (1 - w) * relu(1 - l)`` with ``w = sigmoid(-(l/0.05 - q))`` and
    ``q = 0.5 + 0.01 * (sigmoid(mean(l/0.05)) - 0.5)``."""
    logits = beta * (
        (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    )
    quantile = 0.5 + 0.01 * (torch.sigmoid((logits / 0.05).mean()) - 0.5)
    weights = torch.sigmoid(-(logits / 0.05 - quantile))
    return weights * -F.logsigmoid(logits) + (1 - weights) * torch.relu(1 - logits)


def cell(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """CELL: ``0.5 * exp(-beta * x) + 0.5 * -log sigmoid(beta * x)``."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    return 0.5 * torch.exp(-beta * logits) + 0.5 * -F.logsigmoid(beta * logits)


def dbaql(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """DBAQL: ``c * -log sigmoid(l / 0.9) + (1 - c) * exp(-0.9 * l)`` with ``c = sigmoid(var(l / 0.05))``."""
    logits = beta * (
        (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    )
    variability = (
        (logits / 0.05).var() if logits.numel() > 1 else logits.sum() * 0
    )  # published: NaN at batch 1
    blend = torch.sigmoid(variability)
    return blend * -F.logsigmoid(logits / 0.9) + (1 - blend) * torch.exp(-logits * 0.9)


def pfl(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """PFL: ``-log sigmoid(l) / 2`` where the policy already prefers chosen (``pi_c > pi_r``), else
    ``2 * relu(1 - l)``."""
    logits = beta * (
        (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    )
    is_correct = policy_chosen_logps > policy_rejected_logps
    return torch.where(is_correct, -F.logsigmoid(logits) / 2.0, torch.relu(1 - logits) * 2.0)
