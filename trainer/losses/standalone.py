"""Widely used preference losses that TRL's ``DPOTrainer`` does not offer (they have trainers of their own), in
the sequence contract: SimPO, ORPO and paired KTO. SimPO and ORPO are reference-free and length-normalised; their
registry entries declare ``reference_free`` and ``needs_lengths`` and carry the published hyperparameters,
``beta`` included (the trainer uses a loss's own ``beta`` instead of its configured one)."""

import torch
import torch.nn.functional as F


def simpo(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    chosen_lengths,
    rejected_lengths,
    gamma_beta_ratio=0.25,
    label_smoothing=0.0,
):
    """SimPO: ``-(1 - e) log sigmoid(beta * (pi_c / |y_c| - pi_r / |y_r| - gamma / beta)) - e log sigmoid(-...)``,
    the reference-free reward ``beta * mean token log-prob`` with a target margin ``gamma``. Meng et al. 2024,
    "SimPO: Simple Preference Optimization with a Reference-Free Reward", Eq. 6; code princeton-nlp/SimPO
    ``scripts/simpo_trainer.py`` ``simpo_loss`` (lines 560-595: ``logits = pi_logratios - self.gamma_beta_ratio``,
    log-probs averaged by ``get_batch_logps(average_log_prob=True)``). Defaults from ``scripts/simpo_config.py``
    (lines 55-56): ``beta = 2.0``, ``gamma_beta_ratio = 0.25`` (gamma = 0.5), ``label_smoothing = 0``. The
    reference log-probs are not read."""
    chosen = policy_chosen_logps / chosen_lengths.clamp(min=1.0)
    rejected = policy_rejected_logps / rejected_lengths.clamp(min=1.0)
    logits = chosen - rejected - gamma_beta_ratio
    return (
        -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    )


def orpo(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    chosen_lengths,
    rejected_lengths,
):
    """ORPO: ``L_SFT + lambda * -log sigmoid(log odds(y_c) - log odds(y_r))`` with ``lambda = beta``,
    ``log odds(y) = a - log(1 - exp(a))`` on the mean token log-prob ``a = pi / |y|``, and ``L_SFT`` the mean
    negative log-likelihood per chosen token over the batch (the model's own cross-entropy on the chosen labels,
    given to every pair). Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model",
    Eqs. 4-7; code xfactlab/orpo ``src/orpo_trainer.py`` lines 32-86 and TRL 1.16's ``ORPOTrainer``
    (``trl/experimental/orpo/orpo_trainer.py``: ``odds_ratio_loss``, ``loss = policy_nll_loss - losses.mean()``).
    ``lambda`` defaults to 0.1, TRL's ``ORPOConfig.beta`` ("denoted by lambda in the paper"). The reference
    log-probs are not read."""
    chosen = policy_chosen_logps / chosen_lengths.clamp(min=1.0)
    rejected = policy_rejected_logps / rejected_lengths.clamp(min=1.0)
    # log(1 - exp(a)) for a < 0, branching at -ln 2 as TRL's ORPO does (written out: the body is all the sandbox sees)
    both = torch.stack((chosen, rejected))
    log1mexp = torch.where(
        both < -0.6931471805599453, torch.log1p(-torch.exp(both)), torch.log(-torch.expm1(both))
    )
    log_odds = (chosen - rejected) - (log1mexp[0] - log1mexp[1])
    nll = -policy_chosen_logps.sum() / chosen_lengths.sum().clamp(min=1.0)
    return nll - beta * F.logsigmoid(log_odds)


def kto_pair(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """KTO on paired data: with ``c = pi_c - ref_c``, ``r = pi_r - ref_r`` and the batch KL estimates
    ``z_c = max(0, mean(c))``, ``z_r = max(0, mean(r))`` (each side's reference point taken from the other half),
    ``(1 - sigmoid(beta (c - z_r)) + 1 - sigmoid(beta (z_c - r))) / 2``. Ethayarajh et al. 2024, "KTO: Model
    Alignment as Prospect Theoretic Optimization", Eq. 7 of the HALOs report; code TRL v0.8.6
    ``trl/trainer/dpo_trainer.py`` lines 887-901 (``loss_type="kto_pair"``, removed from ``DPOTrainer`` in 0.10).
    TRL concatenated the chosen and rejected terms into ``2 * batch`` losses; their per-pair average has the same
    batch mean."""
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    chosen_kl = chosen.mean().clamp(min=0)
    rejected_kl = rejected.mean().clamp(min=0)
    chosen_losses = 1 - torch.sigmoid(beta * (chosen - rejected_kl))
    rejected_losses = 1 - torch.sigmoid(beta * (chosen_kl - rejected))
    return (chosen_losses + rejected_losses) / 2
