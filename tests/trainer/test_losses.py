"""Each built-in loss pinned on fixed tensors against numbers computed by hand (scalar ``math``, outside torch)."""

import math

import pytest
import torch

from tests.builders import TRL_LOSS_TYPES
from trainer.losses import LossInputs, get_loss_spec, loss_names
from trainer.trainer import extrapolated_token_logps

BETA = 0.5
PC = torch.tensor([-1.0, -2.0])
PR = torch.tensor([-2.0, -1.0])
RC = torch.tensor([-1.5, -1.5])
RR = torch.tensor([-1.5, -1.5])
LENGTHS = {"chosen_lengths": torch.tensor([2.0, 5.0]), "rejected_lengths": torch.tensor([4.0, 2.0])}

# margins x = (pc - pr) - (rc - rr) = [1, -1]; log-ratios c = pc - rc = [0.5, -0.5], r = pr - rr = [-0.5, 0.5];
# completion lengths |y_c| = [2, 5], |y_r| = [4, 2]. Losses with their own beta (simpo 2.0, orpo 0.1) use it.
EXPECTED = {
    "sigmoid": [0.4740769841801067, 0.9740769841801067],
    "spin": [0.4740769841801067, 0.9740769841801067],
    "hinge": [0.5, 1.5],
    "spin_hinge": [0.5, 1.5],
    "ipo_sum": [0.0, 4.0],
    "cell": [0.54030382194637, 1.3113991274401173],
    "padll": [0.426669285762096, 0.438334642881048],
    "discopop": [0.6065246465980625, 0.9741076115928471],
    "pfl": [0.23703849209005334, 3.0],
    "aql": [0.4999980597600602, 0.9740914658338204],
    "aqfl": [0.48494586759437974, 1.0570982311470942],
    "dbaql": [0.45346347999593695, 1.0090190355514925],
    # (c / |y_c| - r / |y_r| - 1 / (2 beta))^2 = (0.375 - 1)^2, (-0.35 - 1)^2
    "ipo": [0.390625, 1.8225000000000002],
    "sigmoid_norm": [0.6037852895555947, 0.7844704306630468],
    # label_smoothing 1e-3 (exo_pair), 0.1 (robust)
    "exo_pair": [1.9457340001101657, 3.637327142047196],
    "robust": [0.41157698418010663, 1.0365769841801067],
    "nca_pair": [1.2768788397576871, 1.5268788397576871],
    "bco_pair": [1.1518788397576871, 1.6518788397576871],
    "sppo_hard": [0.5, 4.5],
    # sort(pc - pr) = [-1, 1] against sort(rc - rr) = [0, 0]; sort(c) - sort(r) = [0, 0]
    "aot": [0.9740769841801067, 0.4740769841801067],
    "aot_unpaired": [0.6931471805599453, 0.6931471805599453],
    "apo_zero": [0.8756469982284039, 1.1243530017715961],
    "apo_down": [0.9397171696839435, 1.0602828303160565],
    # -(pc_1 + pc_2) / (|y_c,1| + |y_c,2|) = 3 / 7 for every pair
    "sft": [0.42857142857142855, 0.42857142857142855],
    "rpo": [0.9026484127515353, 1.4026484127515353],
    "simpo": [0.9740769841801067, 0.8543552444685272],
    "orpo": [0.4978861466274231, 0.4849973482640208],
    # z_c = max(0, mean(c)) = 0, z_r = 0
    "kto_pair": [0.43782349911420193, 0.5621765008857981],
}


def test_every_sequence_loss_is_pinned():
    assert set(loss_names("sequence")) == set(EXPECTED)


def test_the_menu_holds_trl_and_the_standalone_losses():
    trl_loss_types = set(TRL_LOSS_TYPES)
    assert trl_loss_types | {"simpo", "orpo", "kto_pair", "rpo", "ipo_sum"} <= set(loss_names())


def _call(name: str, pc=PC, pr=PR, rc=RC, rr=RR, **params) -> torch.Tensor:
    spec = get_loss_spec(name)
    beta = spec.params(**params).get("beta", BETA)
    extra = LENGTHS if spec.needs_lengths else {}
    return spec.build(**params)(pc, pr, rc, rr, beta, **extra)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sequence_loss_value(name):
    out = _call(name)
    assert out.shape == (2,)
    torch.testing.assert_close(out, torch.tensor(EXPECTED[name]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["simpo", "orpo", "sft"])
def test_reference_free_losses_ignore_the_reference(name):
    assert get_loss_spec(name).reference_free
    torch.testing.assert_close(_call(name, rc=RC + 3.0, rr=RR - 7.0), _call(name))


def test_length_normalised_losses_use_the_lengths():
    spec = get_loss_spec("ipo")
    longer = {
        "chosen_lengths": LENGTHS["chosen_lengths"] * 2,
        "rejected_lengths": LENGTHS["rejected_lengths"],
    }
    assert spec.needs_lengths and not get_loss_spec("ipo_sum").needs_lengths
    assert not torch.allclose(spec.build()(PC, PR, RC, RR, BETA, **longer), _call("ipo"))


def test_label_smoothing_and_gamma_are_parameters():
    assert not torch.allclose(_call("robust", label_smoothing=0.2), _call("robust"))
    assert not torch.allclose(_call("aot", label_smoothing=0.2), _call("aot"))
    assert not torch.allclose(_call("simpo", gamma_beta_ratio=1.0), _call("simpo"))
    assert get_loss_spec("simpo").params() == {"beta": 2.0, "gamma_beta_ratio": 0.25, "label_smoothing": 0.0}
    assert get_loss_spec("simpo").params(beta=2.5)["beta"] == 2.5


def test_weighted_combinations_follow_trl_loss_weights():
    combined = get_loss_spec("0.8*sigmoid+0.2*bco_pair+sft")  # TRL's MPO example
    assert combined.needs_lengths and not combined.reference_free
    expected = 0.8 * torch.tensor(EXPECTED["sigmoid"]) + 0.2 * torch.tensor(EXPECTED["bco_pair"])
    expected = expected + torch.tensor(EXPECTED["sft"])
    torch.testing.assert_close(combined.build()(PC, PR, RC, RR, BETA, **LENGTHS), expected)
    smoothed = get_loss_spec("sigmoid+robust").build(label_smoothing=0.2)(PC, PR, RC, RR, BETA)
    torch.testing.assert_close(
        smoothed, torch.tensor(EXPECTED["sigmoid"]) + _call("robust", label_smoothing=0.2)
    )
    namespace = {"torch": torch, "F": torch.nn.functional}
    exec(
        get_loss_spec("rpo").source, namespace
    )  # the source is self-contained and means what the callable does
    torch.testing.assert_close(namespace["rpo"](PC, PR, RC, RR, BETA, **LENGTHS), _call("rpo"))
    for bad in ("sigmoid+", "x*sigmoid", "sigmoid+tdpo1", "sigmoid+nope"):
        with pytest.raises((ValueError, KeyError)):
            get_loss_spec(bad)


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
        (
            "granular",
            {"chosen_weights": torch.tensor([[1.0, 0.0]]), "chosen_kl": None, "rejected_kl": None},
            0.38687100611489994,
        ),
        ("granular_tdpo", {"chosen_weights": torch.tensor([[1.0, 0.0]])}, 0.41155083286785243),
    ],
)
def test_token_loss_value(name, overrides, expected):
    out = get_loss_spec(name).build()(_token_inputs(**overrides), BETA)
    torch.testing.assert_close(out, torch.tensor([expected]), rtol=1e-5, atol=1e-6)


def test_tdpo2_stops_the_gradient_of_the_chosen_kl():
    chosen_kl = torch.tensor([[0.1, 0.2]], requires_grad=True)
    rejected_kl = torch.tensor([[0.3, 0.1]], requires_grad=True)
    get_loss_spec("tdpo2").build()(
        _token_inputs(chosen_kl=chosen_kl, rejected_kl=rejected_kl), BETA
    ).sum().backward()
    assert chosen_kl.grad is None or torch.all(chosen_kl.grad == 0)
    assert torch.all(rejected_kl.grad != 0)
    chosen_kl.grad = None
    get_loss_spec("tdpo1").build()(
        _token_inputs(chosen_kl=chosen_kl, rejected_kl=rejected_kl), BETA
    ).sum().backward()
    assert torch.all(chosen_kl.grad != 0)


# ---- SPA: the published code's logit extrapolation and threshold rule (kingdy2002/SPA dpo_trainer.py) ----------


def _log_softmax_at(logits: list[float], label: int) -> float:
    return logits[label] - math.log(sum(math.exp(v) for v in logits))


# Two pairs, rows [chosen_1, chosen_2, rejected_1, rejected_2]; one prompt token then one completion token whose
# label is token 0 of a 3-token vocabulary. Pair 1: the policy raised both answers, the chosen one where it is
# already likely (saturating), the rejected one where it is not; pair 2: chosen up, rejected down.
POLICY_NEXT = [[1.0, 0.0, 0.0], [2.0, 0.0, 0.5], [-4.8, 0.0, 0.0], [-3.0, 1.0, 0.0]]
REFERENCE_NEXT = [[-1.0, 0.0, 0.0], [0.0, 0.0, 0.5], [-6.0, 0.0, 0.0], [-1.0, 1.0, 0.0]]


def _spa_batch(lam: float, step: int = 5) -> LossInputs:
    policy = torch.zeros(4, 2, 3)
    reference = torch.zeros(4, 2, 3)
    policy[:, 0, :] = torch.tensor(POLICY_NEXT)
    reference[:, 0, :] = torch.tensor(REFERENCE_NEXT)
    input_ids = torch.tensor([[2, 0]] * 4)
    completion_mask = torch.tensor([[0, 1]] * 4)
    extrapolated = extrapolated_token_logps(policy, reference, input_ids, completion_mask, lam)
    logps = torch.log_softmax(policy[:, :-1], -1).gather(-1, input_ids[:, 1:, None])[..., 0]
    ref_logps = torch.log_softmax(reference[:, :-1], -1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return LossInputs(
        policy_chosen_token_logps=logps[:2],
        policy_rejected_token_logps=logps[2:],
        reference_chosen_token_logps=ref_logps[:2],
        reference_rejected_token_logps=ref_logps[2:],
        chosen_mask=torch.ones(2, 1),
        rejected_mask=torch.ones(2, 1),
        extrapolated_chosen_token_logps=extrapolated[:2],
        extrapolated_rejected_token_logps=extrapolated[2:],
        step=step,
        max_steps=10,
    )


def _published_spa(lam: float, beta: float, alpha: float, tau: float, warm: bool) -> list[float]:
    """The published formula by hand: mix = 1 + lam; mixed logits per token; log_softmax; label log-probs;
    z_mix = beta ((mix_c - mix_r) - (ref_c - ref_r)); p = [z_mix > tau]; smoothed DPO loss with alpha."""
    mix = 1 + lam

    def mixed(row: int) -> float:
        logits = [mix * p + (1 - mix) * r for p, r in zip(POLICY_NEXT[row], REFERENCE_NEXT[row], strict=True)]
        return _log_softmax_at(logits, 0)

    losses = []
    for pair in range(2):
        chosen, rejected = pair, pair + 2
        pol = _log_softmax_at(POLICY_NEXT[chosen], 0) - _log_softmax_at(POLICY_NEXT[rejected], 0)
        ref = _log_softmax_at(REFERENCE_NEXT[chosen], 0) - _log_softmax_at(REFERENCE_NEXT[rejected], 0)
        z = beta * (pol - ref)
        z_mix = beta * ((mixed(chosen) - mixed(rejected)) - ref)
        a = alpha if warm else 0.0
        p = 1.0 if z_mix > tau else 0.0
        log_sig = -math.log1p(math.exp(-z))
        log_sig_neg = -math.log1p(math.exp(z))
        losses.append(-log_sig * (1 - a + a * p) - log_sig_neg * (a - a * p))
    return losses


def test_extrapolated_log_probs_mix_the_logits_per_token():
    lam = 0.5
    inputs = _spa_batch(lam)
    expected = [
        _log_softmax_at(
            [(1 + lam) * p - lam * r for p, r in zip(POLICY_NEXT[row], REFERENCE_NEXT[row], strict=True)], 0
        )
        for row in range(4)
    ]
    got = torch.cat([inputs.extrapolated_chosen_token_logps, inputs.extrapolated_rejected_token_logps])[:, 0]
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    # not the sequence-level shortcut (1 + lam) * pi - lam * ref of the log-probs
    shortcut = (1 + lam) * inputs.policy_chosen_logps - lam * inputs.reference_chosen_logps
    assert not torch.allclose(inputs.extrapolated_chosen_token_logps[:, 0], shortcut, atol=1e-3)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_spa_matches_the_published_formula(lam):
    loss = get_loss_spec("spa").build(lam=lam, alpha=0.1)
    out = loss(_spa_batch(lam), 1.0)
    torch.testing.assert_close(
        out, torch.tensor(_published_spa(lam, 1.0, 0.1, 0.0, True)), rtol=1e-5, atol=1e-6
    )


def test_spa_smoothed_set_changes_with_the_extrapolation_strength():
    # pair 1: DPO margin z = +0.113 > 0 = tau, extrapolated margin -0.171 at lam = 1/2 and -0.621 at lam = 1 (pair 2
    # stays confident). Scaling z by (1 + lam) would never change its side of the threshold.
    plain = get_loss_spec("sigmoid").build()(*_sequence_view(_spa_batch(0.0)), 1.0)
    z = float(_spa_batch(0.0).policy_chosen_logps[0] - _spa_batch(0.0).policy_rejected_logps[0]) - float(
        _spa_batch(0.0).reference_chosen_logps[0] - _spa_batch(0.0).reference_rejected_logps[0]
    )
    smoothed = {}
    for lam in (0.0, 0.5, 1.0):
        loss = get_loss_spec("spa").build(lam=lam, alpha=0.1)
        out = loss(_spa_batch(lam), 1.0)
        smoothed[lam] = loss.last_smoothed_fraction
        expected = plain.clone()
        if lam > 0:
            expected[0] += 0.1 * z  # -(1 - a) log sigmoid(z) - a log sigmoid(-z) = -log sigmoid(z) + a z
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert z == pytest.approx(0.1134, abs=1e-4)
    assert smoothed == {0.0: 0.0, 0.5: 0.5, 1.0: 0.5}


def _sequence_view(inputs: LossInputs) -> tuple[torch.Tensor, ...]:
    return (
        inputs.policy_chosen_logps,
        inputs.policy_rejected_logps,
        inputs.reference_chosen_logps,
        inputs.reference_rejected_logps,
    )


def test_spa_is_plain_dpo_during_warmup():
    out = get_loss_spec("spa").build(lam=1.0)(_spa_batch(1.0, step=1), 1.0)
    torch.testing.assert_close(out, get_loss_spec("spa").build(lam=1.0, alpha=0.0)(_spa_batch(1.0), 1.0))
    torch.testing.assert_close(
        out, torch.tensor(_published_spa(1.0, 1.0, 0.1, 0.0, False)), rtol=1e-5, atol=1e-6
    )


def test_spa_threshold_follows_the_window_of_batch_means():
    # window 4, threshold 0.25: k = int(4 * 0.25) = 1, tau = (m[1] + m[2]) / 2 of the sorted batch means
    loss = get_loss_spec("spa").build(window=4, threshold=0.25, lam=0.0)
    means = []
    for shift in (0.0, 1.0, -2.0, 3.0):
        batch = _spa_batch(0.0)
        batch = LossInputs(
            **{
                **vars(batch),
                "policy_chosen_token_logps": batch.policy_chosen_token_logps + shift,
                "extrapolated_chosen_token_logps": batch.extrapolated_chosen_token_logps + shift,
            }
        )
        assert loss.confidence == 0.0  # the published initial threshold until the window is full
        loss(batch, 1.0)
        means.append(
            float(
                batch.policy_chosen_logps.mean()
                - batch.policy_rejected_logps.mean()
                - (batch.reference_chosen_logps - batch.reference_rejected_logps).mean()
            )
        )
    ordered = sorted(means)
    assert loss.confidence == pytest.approx((ordered[1] + ordered[2]) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="window"):
        get_loss_spec("spa").build(window=4, threshold=0.9)
