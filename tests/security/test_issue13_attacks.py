"""Every attack class of issue 13, each stopped (for the novelty keys: made truthful), with the parent process
unchanged after each (the autouse `parent_unchanged` fixture: environment, torch functions and global state,
files, processes).

The policy refuses most of them as written (see test_policy_attacks.py); here they also run with the policy
bypassed (`run_unchecked`), to show that tracing and the graph stop them by construction: the trainer only
ever runs the graph, which holds allow-listed pure tensor operations and nothing that counts, sleeps, writes
or looks at grad mode.
"""

import sysconfig
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sandbox.interpreter import build_loss
from sandbox.novelty import fingerprint
from sandbox.validate import validate_source
from tests.security.attack_kit import MARGIN, RETURN, loss_source

SIGNATURE_WITH = (
    "def loss_fn(\n"
    "    policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta,\n"
    "    {extra}\n"
    "):\n"
)
REVERSED = "    return -F.logsigmoid(-beta * x)\n"
HINGE = "    return torch.relu(1 - beta * x)\n"


def _batch(size: int = 12, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(size)
    return [-(torch.rand(size, generator=gen) * 100 + 10).to(dtype) for _ in range(4)]


def _dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))


def _rejected(result, stage: str, fragment: str) -> None:
    assert not result.valid, "the attack was accepted"
    assert result.stage == stage, (result.stage, result.error)
    assert fragment in result.error, result.error


def _graph_is_dpo(graph: dict) -> None:
    loss = build_loss(graph)
    for size in (1, 7, 33):
        batch = _batch(size)
        torch.testing.assert_close(loss(*batch, 0.1), _dpo(*batch, 0.1))


# ---- escape via an import alias, then the audit hook rebound ---------------------------------------------


def test_rebinding_the_audit_rules_does_not_disable_the_hook(attack_pool, canary_dir):
    header = "import sandbox.audit\nsandbox.audit.refusal = lambda event, args: None\n"
    body = f"    open({str(canary_dir / 'pwned')!r}, 'w').write('x')\n"
    result = attack_pool.run_unchecked(loss_source(body, header))
    _rejected(result, "execution", "SandboxRefusal")


# ---- files through an allowed module --------------------------------------------------------------------


def test_a_pth_file_cannot_be_written_through_torch(attack_pool):
    target = Path(sysconfig.get_paths()["purelib"]) / "evopo_issue13_canary.pth"
    body = f"    torch.save(x, {str(target)!r})\n"
    assert not validate_source(loss_source(body), pool=attack_pool).valid  # the policy: torch.save
    result = attack_pool.run_unchecked(loss_source(body))
    assert not result.valid
    assert not target.exists()


# ---- global torch state ---------------------------------------------------------------------------------

STATE_CHANGES = [
    "torch.set_grad_enabled(False)",
    "torch.set_default_dtype(torch.float64)",
    "torch.set_num_threads(7)",
    "torch.use_deterministic_algorithms(True)",
]


@pytest.mark.parametrize("change", STATE_CHANGES)
def test_global_torch_state_stays_in_the_child_and_out_of_the_graph(attack_pool, change):
    assert validate_source(loss_source(f"    {change}\n"), pool=attack_pool).stage == "policy"
    result = attack_pool.run_unchecked(loss_source(f"    {change}\n", header=f"import torch\n{change}"))
    if result.graph is not None:  # traced: the change happened in the child only and is not in the graph
        _graph_is_dpo(result.graph)


# ---- the six ways to write into the caller's tensors ----------------------------------------------------

# (body, the policy rule that refuses it)
MUTATIONS = {
    "augmented-assignment-on-argument": ("    policy_chosen_logps += 1.0\n", "[in-place]"),
    "alias-then-slice-assignment": ("    y = policy_chosen_logps\n    y[:] = 0.0\n", "[in-place]"),
    "chained-subscripts": ("    policy_chosen_logps[:][0] = 0.0\n", "[in-place]"),
    "out-keyword": ("    torch.add(x, 1.0, out=policy_rejected_logps)\n", "[in-place]"),
    "resize-through-out": ("    torch.cat([x, x], out=policy_chosen_logps)\n", "[in-place]"),
    "write-through-detach": ("    policy_chosen_logps.detach().mul_(0.0)\n", "[attribute]"),
}


@pytest.mark.parametrize(("body", "rule"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_mutations_are_refused_and_graphs_never_write(attack_pool, body, rule):
    _rejected(validate_source(loss_source(body), pool=attack_pool), "policy", rule)
    result = attack_pool.run_unchecked(loss_source(body))
    if result.graph is None:
        assert result.stage in ("trace", "execution")
        return
    batch = (
        _batch()
    )  # traced without error (`+=` on a proxy is an addition): running the graph writes nothing
    copies = [t.clone() for t in batch]
    build_loss(result.graph)(*batch, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(batch, copies, strict=True))


# ---- call counting: state kept across calls -------------------------------------------------------------

COUNTER = "    calls[0] += 1\n    if calls[0] > {after}:\n        x = -x\n"


def _counting(body: str, default: bool) -> str:
    """A DPO loss running `body` (which uses `calls`), counting in a default argument or a module global."""
    if default:
        return SIGNATURE_WITH.format(extra="calls=[0]") + MARGIN + body + RETURN
    return "calls = [0]\nkept = []\n" + loss_source(body)


def test_a_counter_in_a_default_argument_is_refused_twice(attack_pool):
    source = _counting(COUNTER.format(after=8), default=True)
    _rejected(validate_source(source, pool=attack_pool), "policy", "[default]")
    _rejected(attack_pool.run_unchecked(source), "trace", "[stateful] default arguments must be constants")


def test_a_call_counting_sleeper_gets_a_graph_that_never_wakes(attack_pool):
    source = _counting(COUNTER.format(after=8), default=False)  # module state: only without the policy
    _rejected(validate_source(source, pool=attack_pool), "policy", "[module-level]")
    result = attack_pool.run_unchecked(source)
    assert result.valid, result.error
    loss = build_loss(result.graph)
    batch = _batch()
    first = loss(*batch, 0.1)
    for _ in range(50):  # training calls the graph; no Python counter exists any more
        torch.testing.assert_close(loss(*batch, 0.1), first)
    torch.testing.assert_close(first, _dpo(*batch, 0.1))


def test_a_loss_that_changes_between_calls_is_rejected(attack_pool):
    source = _counting(COUNTER.format(after=1), default=False)
    _rejected(attack_pool.run_unchecked(source), "trace", "[stateful] the loss computed a different graph")


# ---- sleepers that recognise the test inputs ------------------------------------------------------------

RECOGNISERS = {
    "batch-size": (
        "    if policy_chosen_logps.shape[0] == 16:\n        return -F.logsigmoid(beta * x)\n",
        "trace",
        "[batch-size]",
    ),
    "numel": ("    if x.numel() != 16:\n        x = -x\n", "trace", "[batch-size]"),
    "float64": (
        "    if policy_chosen_logps.dtype == torch.float64:\n        return -F.logsigmoid(beta * x)\n",
        "trace",
        "[control-flow]",
    ),
    "zero-margins": (
        "    if (x == 0).all():\n        return -F.logsigmoid(beta * x)\n",
        "trace",
        "[control-flow]",
    ),
    "large-log-probs": (
        "    if policy_chosen_logps.abs().max() > 1000:\n        x = -x\n",
        "trace",
        "[control-flow]",
    ),
    "zero-margins-as-tensor-math": (
        "    x = torch.where((x == 0).all(), x, -x)\n",
        "gradient_tests",
        "direction",
    ),
    "batch-size-as-tensor-math": (
        "    x = torch.where(torch.ones_like(x).sum() == 16, x, -x)\n",
        "gradient_tests",
        "direction",
    ),
    "float32-by-rounding": ("    x = torch.where(x + 1e-10 == x, -x, x)\n", "gradient_tests", "direction"),
}


@pytest.mark.parametrize(("body", "stage", "fragment"), RECOGNISERS.values(), ids=RECOGNISERS.keys())
def test_input_recognising_sleepers_are_rejected(attack_pool, body, stage, fragment):
    """Python cannot branch on what the candidate sees while traced (proxies); tensor math that branches on
    the inputs is tested on fresh random batches of random sizes, in float32 as well."""
    source = loss_source(body).replace(RETURN, REVERSED) if "return" in body else loss_source(body)
    _rejected(validate_source(source, pool=attack_pool), stage, fragment)


def test_a_no_grad_sleeper_has_no_grad_mode_in_its_graph(attack_pool):
    body = "    if not torch.is_grad_enabled():\n        return torch.zeros_like(x)\n"
    _rejected(validate_source(loss_source(body), pool=attack_pool), "policy", "[attribute]")
    result = attack_pool.run_unchecked(loss_source(body))
    assert result.valid, result.error
    batch = _batch()
    with torch.no_grad():
        reported = build_loss(result.graph)(*batch, 0.1)
    torch.testing.assert_close(reported, _dpo(*batch, 0.1))
    requires_grad = "    if not policy_chosen_logps.requires_grad:\n        return torch.zeros_like(x)\n"
    _rejected(attack_pool.run_unchecked(loss_source(requires_grad)), "trace", "[control-flow]")


# ---- hangs, memory bombs and leaks that start after the tests -------------------------------------------

AFTER_THE_TESTS = {
    "hang": "        while True:\n            pass\n",
    "memory-bomb": "        junk = bytearray(10 ** 11)\n",
    "leak": "        kept.append(bytearray(10 ** 8))\n",
}


@pytest.mark.parametrize("payload", AFTER_THE_TESTS.values(), ids=AFTER_THE_TESTS.keys())
def test_payloads_after_the_tests_never_run(attack_pool, payload):
    body = "    calls[0] += 1\n    if calls[0] > 3:\n" + payload
    _rejected(validate_source(_counting(body, default=True), pool=attack_pool), "policy", "[default]")
    result = attack_pool.run_unchecked(_counting(body, default=False))
    assert result.valid, result.error
    loss = build_loss(result.graph)
    batch = _batch()
    started = time.monotonic()
    for _ in range(200):
        loss(*batch, 0.1)
    assert time.monotonic() - started < 10


def test_a_graph_whose_memory_grows_with_the_batch_is_rejected(attack_pool):
    body = "    junk = x.reshape(1, -1).expand(x.numel() ** 3, x.numel()).sum(0)\n    x = x + 0 * junk\n"
    _rejected(validate_source(loss_source(body), pool=attack_pool), "execution", "a memory bomb?")


# ---- novelty keys that lie ------------------------------------------------------------------------------


@pytest.mark.parametrize("condition", ["0.1 + 0.2 == 0.3", "math.sqrt(2) ** 2 == 2", "1e16 + 1 == 1e16 + 2"])
def test_a_condition_python_and_sympy_disagree_on_cannot_forge_the_canonical_form(attack_pool, condition):
    body = f"    if {condition}:\n        return -F.logsigmoid(beta * x)\n"
    forged = validate_source(loss_source(body).replace(RETURN, HINGE), pool=attack_pool)
    hinge = validate_source(loss_source().replace(RETURN, HINGE), pool=attack_pool)
    dpo = validate_source(loss_source(), pool=attack_pool)
    assert forged.valid and hinge.valid and dpo.valid
    assert forged.canonical_form == hinge.canonical_form == "Max(0, -beta*margin + 1)"
    assert forged.fingerprint == hinge.fingerprint != dpo.fingerprint


def test_a_float64_only_clone_of_dpo_gets_dpos_fingerprint(attack_pool):
    """The extra factor is exactly 1 in float32 (1e-60 underflows to 0) and 1.01 in float64."""
    body = "    scale = 1 + torch.ones_like(x) * 1e-30 * 1e-30 * 1e30 * 1e28\n"
    clone = validate_source(
        loss_source(body).replace(RETURN, "    return -F.logsigmoid(beta * x) * scale\n"), pool=attack_pool
    )
    dpo = validate_source(loss_source(), pool=attack_pool)
    assert clone.valid and dpo.valid
    assert clone.fingerprint == dpo.fingerprint
    clone_loss, dpo_loss = build_loss(clone.graph), build_loss(dpo.graph)
    batch64 = _batch(dtype=torch.float64)
    assert not torch.allclose(clone_loss(*batch64, 0.1), dpo_loss(*batch64, 0.1))  # a clone only in float32
    assert fingerprint(_in_float64(clone_loss)) != fingerprint(_in_float64(dpo_loss))  # the old grid's dtype


def _in_float64(loss):
    return lambda *args: loss(*(a.double() if isinstance(a, torch.Tensor) else a for a in args))
