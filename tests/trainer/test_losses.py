"""Each built-in loss pinned on fixed tensors against numbers computed by hand (scalar ``math``, outside torch)."""

import pytest
import torch

from trainer.losses import LossInputs, get_loss_spec, loss_names

BETA = 0.5
PC = torch.tensor([-1.0, -2.0])
PR = torch.tensor([-2.0, -1.0])
RC = torch.tensor([-1.5, -1.5])
RR = torch.tensor([-1.5, -1.5])

# margins x = (pc - pr) - (rc - rr) = [1, -1]
EXPECTED = {
    "sigmoid": [0.4740769841801067, 0.9740769841801067],
    "spin": [0.4740769841801067, 0.9740769841801067],
    "hinge": [0.5, 1.5],
    "spin_hinge": [0.5, 1.5],
    "ipo": [0.0, 4.0],
    "cell": [0.54030382194637, 1.3113991274401173],
    "padll": [0.426669285762096, 0.438334642881048],
    "discopop": [0.6065246465980625, 0.9741076115928471],
    "pfl": [0.23703849209005334, 3.0],
    "aql": [0.4999980597600602, 0.9740914658338204],
    "aqfl": [0.48494586759437974, 1.0570982311470942],
    "dbaql": [0.45346347999593695, 1.0090190355514925],
}


def test_every_sequence_loss_is_pinned():
    assert set(loss_names("sequence")) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sequence_loss_value(name):
    fn = get_loss_spec(name).build()
    out = fn(PC, PR, RC, RR, BETA)
    assert out.shape == (2,)
    torch.testing.assert_close(out, torch.tensor(EXPECTED[name]), rtol=1e-5, atol=1e-6)


def test_discopop_tau_is_a_parameter():
    default = get_loss_spec("discopop").build()(PC, PR, RC, RR, BETA)
    wide = get_loss_spec("discopop").build(tau=1e6)(PC, PR, RC, RR, BETA)
    assert not torch.allclose(default, wide)
    with pytest.raises(ValueError, match="no parameter"):
        get_loss_spec("discopop").build(gamma=1.0)


@pytest.mark.parametrize("name", ["aqfl", "dbaql"])
def test_batch_statistics_losses_are_finite_for_one_pair(name):
    fn = get_loss_spec(name).build()
    pc = PC[:1].clone().requires_grad_(True)
    out = fn(pc, PR[:1], RC[:1], RR[:1], BETA)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(pc.grad).all()


def _token_inputs(**overrides) -> LossInputs:
    # batch 1, two completion tokens per side
    base = dict(
        policy_chosen_token_logps=torch.tensor([[-1.0, -2.0]]),
        policy_rejected_token_logps=torch.tensor([[-2.0, -1.0]]),
        reference_chosen_token_logps=torch.tensor([[-1.5, -1.5]]),
        reference_rejected_token_logps=torch.tensor([[-1.0, -1.0]]),
        chosen_mask=torch.ones(1, 2),
        rejected_mask=torch.ones(1, 2),
        chosen_kl=torch.tensor([[0.1, 0.2]]),
        rejected_kl=torch.tensor([[0.3, 0.1]]),
    )
    base.update(overrides)
    return LossInputs(**base)


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("tdpo1", {}, 0.4932489459974549),
        ("tdpo2", {}, 0.4835890878708248),
        ("granular", {"chosen_weights": torch.tensor([[1.0, 0.0]]), "chosen_kl": None, "rejected_kl": None},
         0.38687100611489994),
        ("granular_tdpo", {"chosen_weights": torch.tensor([[1.0, 0.0]])}, 0.41155083286785243),
    ],
)
def test_token_loss_value(name, overrides, expected):
    out = get_loss_spec(name).build()(_token_inputs(**overrides), BETA)
    torch.testing.assert_close(out, torch.tensor([expected]), rtol=1e-5, atol=1e-6)


def test_tdpo2_stops_the_gradient_of_the_chosen_kl():
    chosen_kl = torch.tensor([[0.1, 0.2]], requires_grad=True)
    rejected_kl = torch.tensor([[0.3, 0.1]], requires_grad=True)
    get_loss_spec("tdpo2").build()(_token_inputs(chosen_kl=chosen_kl, rejected_kl=rejected_kl), BETA).sum().backward()
    assert chosen_kl.grad is None or torch.all(chosen_kl.grad == 0)
    assert torch.all(rejected_kl.grad != 0)
    chosen_kl.grad = None
    get_loss_spec("tdpo1").build()(_token_inputs(chosen_kl=chosen_kl, rejected_kl=rejected_kl), BETA).sum().backward()
    assert torch.all(chosen_kl.grad != 0)


def _spa_inputs(step: int) -> LossInputs:
    zeros = torch.zeros(4, 1)
    return LossInputs(
        policy_chosen_token_logps=torch.tensor([[-2.0], [-1.0], [1.0], [2.0]]),
        policy_rejected_token_logps=zeros,
        reference_chosen_token_logps=zeros,
        reference_rejected_token_logps=zeros,
        chosen_mask=torch.ones(4, 1),
        rejected_mask=torch.ones(4, 1),
        step=step,
        max_steps=10,
    )


def test_spa_smooths_the_low_margin_pairs_after_warmup():
    # margins z = [-2, -1, 1, 2]; extrapolated 1.5 z; 25th percentile of the window = -1.875 -> only z=-2 smoothed
    loss = get_loss_spec("spa").build(percentile=25.0)
    out = loss(_spa_inputs(step=5), 1.0)
    torch.testing.assert_close(out, torch.tensor([1.926928, 1.313262, 0.313262, 0.126928]), rtol=1e-5, atol=1e-5)
    assert loss.last_smoothed_fraction == pytest.approx(0.25)


def test_spa_is_plain_dpo_during_warmup():
    out = get_loss_spec("spa").build(percentile=25.0)(_spa_inputs(step=1), 1.0)
    torch.testing.assert_close(out, torch.tensor([2.126928, 1.313262, 0.313262, 0.126928]), rtol=1e-5, atol=1e-5)
