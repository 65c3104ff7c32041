"""Helpers for the sandbox attack tests: the secret planted in the parent, a DPO loss to hide attacks in."""

SECRET_NAME = "SANDBOX_TEST_API_KEY"
SECRET = "sk-canary-4f1d9c2b7e"

SIGNATURE = (
    "def loss_fn(\n"
    "    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta\n"
    "):\n"
)
MARGIN = (
    "    x = (policy_chosen_logps - policy_rejected_logps)"
    " - (reference_chosen_logps - reference_rejected_logps)\n"
)
RETURN = "    return -F.logsigmoid(beta * x)\n"


def loss_source(body: str = "", header: str = "") -> str:
    """A DPO loss with `header` at module level and `body` (4-space indented lines) before its return."""
    return f"{header}\n{SIGNATURE}{MARGIN}{body}{RETURN}"
