"""Helpers for the sandbox attack tests: the secret planted in the parent, a DPO loss to hide attacks in, and
what a zygote's session looks like at rest."""

from sandbox.isolation import process_table

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


def at_rest(zygote: int) -> bool:
    """Between requests a zygote's session holds the zygote and at most its checker (a child of it)."""
    others = [p for p in process_table() if p.session == zygote and p.state != "Z" and p.pid != zygote]
    return len(others) <= 1 and all(p.ppid == zygote for p in others)
