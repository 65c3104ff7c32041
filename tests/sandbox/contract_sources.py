"""Candidate sources in the two LLM contracts, shared by the sandbox and trainer tests."""

SIMPO_LIKE = (
    "import torch.nn.functional as F\n"
    "def loss_fn(pc, pr, rc, rr, beta, chosen_lengths, rejected_lengths):\n"
    "    return -F.logsigmoid(beta * (pc / chosen_lengths - pr / rejected_lengths) - 0.5)\n"
)
SUMMED = SIMPO_LIKE.replace("pc / chosen_lengths - pr / rejected_lengths", "pc - pr")
TOKEN_DPO = (
    "import torch.nn.functional as F\n"
    "def token_loss_fn(pc, pr, rc, rr, chosen_mask, rejected_mask, beta):\n"
    "    chosen = ((pc - rc) * chosen_mask).sum(-1)\n"
    "    rejected = ((pr - rr) * rejected_mask).sum(-1)\n"
    "    return -F.logsigmoid(beta * (chosen - rejected))\n"
)
TOKEN_TDPO = (
    "import torch.nn.functional as F\n"
    "def token_loss_fn(pc, pr, rc, rr, chosen_mask, rejected_mask, beta, chosen_kl, rejected_kl):\n"
    "    chosen = ((pc - rc) * chosen_mask).sum(-1)\n"
    "    rejected = ((pr - rr) * rejected_mask).sum(-1)\n"
    "    kl = (rejected_kl * rejected_mask).sum(-1) - (chosen_kl * chosen_mask).sum(-1)\n"
    "    return -F.logsigmoid(beta * ((chosen - rejected) - kl))\n"
)
TOKEN_WRONG_WAY = TOKEN_DPO.replace("(chosen - rejected)", "(rejected - chosen)")
# Per-token mean over the tensor's width: padding (which depends on the other examples of a batch) changes it.
TOKEN_PADDING_DEPENDENT = TOKEN_DPO.replace(").sum(-1)\n    rejected", ").mean(-1)\n    rejected")
# A size condition on the sequence length: only a batch of one may be special-cased.
TOKEN_LENGTH_BRANCH = TOKEN_DPO.replace(
    "    return -F.logsigmoid",
    "    if pc.shape[1] > 100:\n        chosen = chosen * 0\n    return -F.logsigmoid",
)
