"""Reference sequence-level losses as source strings: DPO/sigmoid, hinge, IPO and DiscoPOP's discoveries.

The DiscoPOP losses are transcribed from `src/alignment/gpo.py` of github.com/luchris429/DiscoPOP with
`self.beta` replaced by the `beta` argument of the sequence-level contract.
"""

SIGMOID = """
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    logits = pi_logratios - (reference_chosen_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * logits)
"""

HINGE = """
import torch


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    logits = pi_logratios - (reference_chosen_logps - reference_rejected_logps)
    return torch.relu(1 - beta * logits)
"""

IPO = """
def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    logits = pi_logratios - (reference_chosen_logps - reference_rejected_logps)
    return (logits - 1 / (2 * beta)) ** 2
"""

LRML = """
import torch
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    tau = 0.05
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    logits = logits * beta
    # Modulate the mixing coefficient based on the log ratio magnitudes
    log_ratio_modulation = torch.sigmoid(logits / tau)
    logistic_component = -F.logsigmoid(logits)
    exp_component = torch.exp(-logits)
    # Blend between logistic and exponential component based on log ratio modulation
    losses = logistic_component * (1 - log_ratio_modulation) + exp_component * log_ratio_modulation
    return losses
"""

PADLL = """
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    base_decay = 0.9
    mismatch_penalty = 0.5  # Penalty decay for mismatched choices

    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    mismatches = (logits < 0).float()  # Identify mismatches

    adaptive_decay = base_decay * (1 - mismatches * mismatch_penalty)
    weighted_losses = adaptive_decay * -F.logsigmoid(beta * logits)
    return weighted_losses
"""

AQFL = """
import torch
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    quantile_update_rate = 0.05
    distance_scale = 0.1

    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios

    logits = logits * beta

    logits_std = (logits / 0.05).std()

    adaptive_quantile = logits_std * torch.sigmoid(-logits / 0.05).mean()
    adaptive_quantile += quantile_update_rate * (torch.sigmoid((logits / 0.05).mean()) - adaptive_quantile)

    distance_from_quantile = (logits / 0.05 - adaptive_quantile).abs()
    blend_rate = torch.sigmoid(distance_scale * distance_from_quantile)

    logistic_losses = -F.logsigmoid(logits)
    hinge_losses = torch.relu(1 - logits)

    losses = blend_rate * logistic_losses + (1 - blend_rate) * hinge_losses
    return losses
"""

AQL = """
import torch
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    percentile = 0.5  # Start with the median quantile
    moving_quantile_weight = 0.01  # Weight for updating the moving quantile
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios

    logits = logits * beta

    moving_quantile = percentile + moving_quantile_weight * (
        torch.sigmoid((logits / 0.05).mean()) - percentile
    )

    quantile_weights = torch.sigmoid(-(logits / 0.05 - moving_quantile))

    logistic_losses = -F.logsigmoid(logits)
    hinge_losses = torch.relu(1 - logits)

    # Blend the logistic and hinge losses based on the dynamic quantile weight
    losses = quantile_weights * logistic_losses + (1 - quantile_weights) * hinge_losses
    return losses
"""

CELL = """
import torch
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    exp_losses = torch.exp(-beta * logits)
    log_losses = -F.logsigmoid(beta * logits)
    # Combine the losses with a tunable mixing coefficient
    alpha = 0.5
    losses = alpha * exp_losses + (1 - alpha) * log_losses
    return losses
"""

DBAQL = """
import torch
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    # Constants for the loss function
    temperature = 0.9
    dynamic_blend_rate = 1.0

    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios

    logits = logits * beta

    logits_variability = (logits / 0.05).var()

    # Calculate dynamic blending coefficient based on logits variability
    dynamic_blend_coeff = torch.sigmoid(logits_variability) * dynamic_blend_rate

    # Prepare components of the blended loss
    logistic_loss = -F.logsigmoid(logits / temperature)
    exp_loss = torch.exp(-logits * temperature)

    # Blend the losses dynamically
    losses = dynamic_blend_coeff * logistic_loss + (1 - dynamic_blend_coeff) * exp_loss
    return losses
"""

PFL = """
import torch
import torch.nn.functional as F


def loss_fn(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    focus_scale = 2.0  # Scale to emphasize or de-emphasize based on the correctness of predictions

    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios

    logits = logits * beta

    is_correct = policy_chosen_logps > policy_rejected_logps

    logistic_losses = -F.logsigmoid(logits)
    hinge_losses = torch.relu(1 - logits)

    focused_loss = torch.where(
        is_correct,
        logistic_losses / focus_scale,  # De-emphasize correct predictions
        hinge_losses * focus_scale,  # Emphasize incorrect predictions
    )
    return focused_loss
"""

BASELINE_LOSSES = {"sigmoid": SIGMOID, "hinge": HINGE, "ipo": IPO}
DISCOPOP_LOSSES = {
    "lrml": LRML,
    "padll": PADLL,
    "aqfl": AQFL,
    "aql": AQL,
    "cell": CELL,
    "dbaql": DBAQL,
    "pfl": PFL,
}
ALL_LOSSES = {**BASELINE_LOSSES, **DISCOPOP_LOSSES}
