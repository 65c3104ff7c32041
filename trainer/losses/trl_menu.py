"""TRL's ``DPOTrainer`` loss types that ``sequence.py`` and ``discopop.py`` do not already hold, under TRL's names
and with TRL's meaning: each body is the branch of ``DPOTrainer._compute_loss`` (TRL 1.16.0,
``trl/trainer/dpo_trainer.py`` lines 1387-1510) written in the sequence contract. Below ``c = pi_c - ref_c`` and
``r = pi_r - ref_r`` are the chosen and rejected log-ratios of summed completion log-probs and ``x = c - r``; the
papers are those TRL's documentation (``docs/source/dpo_trainer.md``) names for each loss type, by arXiv id.

The length-normalised losses (``ipo``, ``sigmoid_norm``, ``sft``) take ``chosen_lengths`` and
``rejected_lengths``, the completion token counts; TRL clamps them to at least 1, and so do these."""

import math

import torch
import torch.nn.functional as F


def ipo(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    chosen_lengths,
    rejected_lengths,
):
    """IPO, length-normalised: ``(c / |y_c| - r / |y_r| - 1 / (2 * beta))^2``. Azar et al. 2023 (2310.12036),
    Eq. 17, on
    per-token averages as TRL computes it (the IPO authors confirmed this form to TRL); TRL 1.16 line 1393.
    ``ipo_sum`` is the unnormalised form."""
    chosen = (policy_chosen_logps - reference_chosen_logps) / chosen_lengths.clamp(min=1.0)
    rejected = (policy_rejected_logps - reference_rejected_logps) / rejected_lengths.clamp(min=1.0)
    return (chosen - rejected - 1 / (2 * beta)) ** 2


def exo_pair(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    label_smoothing=1e-3,
):
    """EXO-pref: ``KL(q || p)`` over {chosen, rejected} with ``q = (sigmoid(beta x), sigmoid(-beta x))`` and
    ``p = (1 - eps, eps)``, ``eps = label_smoothing`` (> 0; the paper recommends 1e-3). Ji et al. 2024, "Towards
    Efficient Exact Optimization of Language Model Alignment" (2402.00856), Eq. 16; TRL 1.16 line 1406."""
    logits = beta * (
        (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    )
    chosen_term = torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-label_smoothing))
    rejected_term = torch.sigmoid(-logits) * (F.logsigmoid(-logits) - math.log(label_smoothing))
    return chosen_term + rejected_term


def nca_pair(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """NCA, pairwise: ``-log sigmoid(beta c) - 0.5 log sigmoid(-beta c) - 0.5 log sigmoid(-beta r)``. Chen et al.
    2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards" (2402.05369); TRL 1.16 line 1419."""
    chosen = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected = beta * (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def robust(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    label_smoothing=0.1,
):
    """Robust DPO: ``((1 - e) * -log sigmoid(beta x) - e * -log sigmoid(-beta x)) / (1 - 2e)``, an unbiased loss
    under labels flipped with probability ``e = label_smoothing`` in [0, 0.5) (0.1, the value the paper and TRL's
    documentation recommend; at 0 it is ``sigmoid``). Chowdhury et al. 2024, "Provably Robust DPO" (2403.00409);
    TRL 1.16 line 1428."""
    logits = beta * (
        (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    )
    clean = -(1 - label_smoothing) * F.logsigmoid(logits)
    flipped = -label_smoothing * F.logsigmoid(-logits)
    return (clean - flipped) / (1 - 2 * label_smoothing)


def bco_pair(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """BCO, paired: ``-log sigmoid(beta c) - log sigmoid(-beta r)``, a binary classifier on the implicit rewards.
    Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment" (2404.04656); TRL 1.16
    line 1433
    (TRL 1.16 has no reward shift: the running mean of TRL 0.9's ``bco_pair`` is gone)."""
    chosen = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected = beta * (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(chosen) - F.logsigmoid(-rejected)


def sppo_hard(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """SPPO with hard labels: ``(c - 0.5 / beta)^2 + (r + 0.5 / beta)^2`` (the winner's probability set to 1, the
    loser's to 0). Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment" (2405.00675),
    Eq. 4.7 of Algorithm 1; TRL 1.16 line 1438."""
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    return (chosen - 0.5 / beta) ** 2 + (rejected + 0.5 / beta) ** 2


def aot(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    label_smoothing=0.0,
):
    """AOT, paired: the smoothed DPO loss on ``d = sort(pi_c - pi_r) - sort(ref_c - ref_r)``, the two log-ratios
    sorted over the batch separately (first-order stochastic dominance of the policy's margins over the
    reference's): ``-(1 - e) log sigmoid(beta d) - e log sigmoid(-beta d)``, ``e = label_smoothing`` (TRL's default
    0). Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport" (2406.05882);
    TRL 1.16 line 1447."""
    policy_sorted, _ = torch.sort(policy_chosen_logps - policy_rejected_logps, dim=0)
    reference_sorted, _ = torch.sort(reference_chosen_logps - reference_rejected_logps, dim=0)
    delta = policy_sorted - reference_sorted
    return -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing


def aot_unpaired(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    label_smoothing=0.0,
):
    """AOT, unpaired: as ``aot`` with ``d = sort(c) - sort(r)``, the chosen and rejected log-ratios sorted over the
    batch separately. Melnyk et al. 2024; TRL 1.16 line 1458."""
    chosen_sorted, _ = torch.sort(policy_chosen_logps - reference_chosen_logps, dim=0)
    rejected_sorted, _ = torch.sort(policy_rejected_logps - reference_rejected_logps, dim=0)
    delta = chosen_sorted - rejected_sorted
    return -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing


def apo_zero(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """APO-zero: ``(1 - sigmoid(beta c)) + sigmoid(beta r)``: raise the chosen likelihood, lower the rejected one
    (for chosen outputs better than the model's). D'Oosterlinck et al. 2024, "Anchored Preference Optimization"
    (2408.06266), Eq. 7; TRL 1.16 line 1467."""
    chosen = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected = beta * (policy_rejected_logps - reference_rejected_logps)
    return (1 - torch.sigmoid(chosen)) + torch.sigmoid(rejected)


def apo_down(
    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
):
    """APO-down: ``sigmoid(beta c) + (1 - sigmoid(beta (c - r)))``: lower both likelihoods, the rejected one more
    (for chosen outputs worse than the model's). D'Oosterlinck et al. 2024, Eq. 8; TRL 1.16 line 1475."""
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    return torch.sigmoid(beta * chosen) + (1 - torch.sigmoid(beta * (chosen - rejected)))


def sft(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    chosen_lengths,
    rejected_lengths,
):
    """SFT / NLL on the chosen completions: ``-sum_i pi_c,i / sum_i |y_c,i|``, the mean negative log-likelihood per
    chosen token over the whole batch, given to every pair (TRL 1.16 line 1495 expands the batch's scalar the same
    way, so only the batch mean is meaningful). Needs no reference. Weighted 1:1 with ``sigmoid`` it is ``rpo``
    (Pang et al. 2024, "Iterative Reasoning Preference Optimization", 2404.19733, alpha = 1 as TRL's paper index
    recommends)."""
    total = -policy_chosen_logps.sum() / chosen_lengths.sum().clamp(min=1.0)
    return total.expand(policy_chosen_logps.shape[0])


def sigmoid_norm(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta,
    chosen_lengths,
    rejected_lengths,
):
    """Length-normalised DPO: ``-log sigmoid(beta (c / |y_c| - r / |y_r|))``, the length normalisation of SimPO
    (2405.14734) kept with the reference model. TRL 1.16 line 1504 (TRL PR #5406)."""
    chosen = (policy_chosen_logps - reference_chosen_logps) / chosen_lengths.clamp(min=1.0)
    rejected = (policy_rejected_logps - reference_rejected_logps) / rejected_lengths.clamp(min=1.0)
    return -F.logsigmoid(beta * (chosen - rejected))
