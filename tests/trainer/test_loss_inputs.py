"""What ``PreferenceTrainer`` hands a loss, checked against a direct computation from each sequence's logits: the
per-token KL of TDPO (direction, alignment to the next-token labels, masking of prompt and padding), SPA's
extrapolated log-probs, the completion lengths and the reference-free inputs of the extended sequence contract."""

import pytest
import torch
from datasets import Dataset

from tests.trainer.conftest import preference_rows
from trainer.config import TrainingConfig, TrainRun
from trainer.data import normalize_rows
from trainer.losses import discovered_loss_spec, get_loss_spec
from trainer.models import load_policy
from trainer.trainer import PreferenceConfig, PreferenceTrainer


class Recorder:
    """Wraps a loss callable and keeps the arguments of its last call."""

    def __init__(self, fn):
        self.fn, self.args, self.kwargs = fn, None, None

    def __call__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        return self.fn(*args, **kwargs)


@pytest.fixture(scope="module")
def moved_policy_state() -> dict[str, torch.Tensor]:
    model, _ = load_policy("tiny")
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _trainer(tmp_path, state, loss, with_reference: bool = True, **params):
    _, rows = normalize_rows(preference_rows(8), None)
    policy, tokenizer = load_policy("tiny")
    policy.load_state_dict(state)
    reference = load_policy("tiny")[0] if with_reference else None
    name = loss if isinstance(loss, str) else "sigmoid"
    # float32: the inputs are compared with a float32 computation to 1e-5
    training = TrainingConfig(model="tiny", loss=name, loss_params=params, batch_size=4, dtype="float32")
    trainer = PreferenceTrainer(
        model=policy,
        ref_model=reference,
        args=PreferenceConfig.from_training(training, TrainRun(data="-", output_dir=str(tmp_path))),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        loss=None if isinstance(loss, str) else loss,
    )
    trainer.loss_fn = Recorder(trainer.loss_fn)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.compute_loss(trainer.model, batch)
    return trainer, batch, policy, reference


def _direct(model, batch, row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row ``row`` without its padding, run alone: (its logits at each position, its tokens, its completion flags)."""
    keep = batch["attention_mask"][row].bool()
    ids = batch["input_ids"][row][keep]
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0].double()
    return logits, ids, batch["completion_mask"][row][keep].bool()


def test_tdpo_per_token_kl_is_kl_of_reference_to_policy_at_each_completion_token(
    tmp_path, moved_policy_state
):
    trainer, batch, policy, reference = _trainer(tmp_path, moved_policy_state, "tdpo1")
    inputs = trainer.loss_fn.args[0]
    kl = torch.cat([inputs.chosen_kl, inputs.rejected_kl])
    token_logps = torch.cat([inputs.policy_chosen_token_logps, inputs.policy_rejected_token_logps])
    ref_token_logps = torch.cat([inputs.reference_chosen_token_logps, inputs.reference_rejected_token_logps])
    mask = torch.cat([inputs.chosen_mask, inputs.rejected_mask]).bool()
    assert kl.shape == token_logps.shape == (batch["input_ids"].shape[0], batch["input_ids"].shape[1] - 1)
    reverse_gap = 0.0
    for row in range(kl.shape[0]):
        policy_logits, ids, completion = _direct(policy, batch, row)
        policy_logps, ref_logps = (
            policy_logits.log_softmax(-1),
            _direct(reference, batch, row)[0].log_softmax(-1),
        )
        # the distribution at position t - 1 predicts token t; only completion tokens count
        targets = [t for t in range(1, len(ids)) if completion[t]]
        assert targets and not completion[0]
        expected_kl = torch.zeros(kl.shape[1], dtype=torch.float64)
        expected_logp = torch.zeros(kl.shape[1], dtype=torch.float64)
        expected_ref = torch.zeros(kl.shape[1], dtype=torch.float64)
        for t in targets:
            p_ref, p_pol = ref_logps[t - 1], policy_logps[t - 1]
            expected_kl[t - 1] = (p_ref.exp() * (p_ref - p_pol)).sum()
            expected_logp[t - 1] = p_pol[ids[t]]
            expected_ref[t - 1] = p_ref[ids[t]]
            reverse_gap = max(
                reverse_gap, abs(float((p_pol.exp() * (p_pol - p_ref)).sum() - expected_kl[t - 1]))
            )
        torch.testing.assert_close(kl[row].double(), expected_kl, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(token_logps[row].double(), expected_logp, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref_token_logps[row].double(), expected_ref, rtol=1e-5, atol=1e-5)
        assert mask[row].tolist() == [bool(expected_logp[i] != 0) for i in range(kl.shape[1])]
    assert kl.min() >= 0 and kl.max() > 0.1  # the policy is far from the reference
    assert reverse_gap > 1e-2  # KL(policy || ref) differs: the test pins the direction


def test_spa_gets_the_extrapolated_log_probs_of_each_completion_token(tmp_path, moved_policy_state):
    lam = 0.5
    trainer, batch, policy, reference = _trainer(tmp_path, moved_policy_state, "spa", lam=lam)
    inputs = trainer.loss_fn.args[0]
    extrapolated = torch.cat(
        [inputs.extrapolated_chosen_token_logps, inputs.extrapolated_rejected_token_logps]
    )
    for row in range(extrapolated.shape[0]):
        policy_logits, ids, completion = _direct(policy, batch, row)
        ref_logits = _direct(reference, batch, row)[0]
        mixed = torch.log_softmax((1 + lam) * policy_logits - lam * ref_logits, -1)
        expected = torch.zeros(extrapolated.shape[1], dtype=torch.float64)
        for t in range(1, len(ids)):
            if completion[t]:
                expected[t - 1] = mixed[t - 1, ids[t]]
        torch.testing.assert_close(extrapolated[row].double(), expected, rtol=1e-5, atol=1e-4)
        sequence_shortcut = (1 + lam) * policy_logits.log_softmax(-1) - lam * ref_logits.log_softmax(-1)
        assert not torch.allclose(mixed, sequence_shortcut, atol=1e-3)


def test_a_loss_declaring_lengths_gets_the_completion_token_counts(tmp_path, moved_policy_state):
    def length_aware(pc, pr, rc, rr, beta, chosen_lengths, rejected_lengths):
        return -torch.nn.functional.logsigmoid(
            beta * ((pc - rc) / chosen_lengths - (pr - rr) / rejected_lengths)
        )

    spec = discovered_loss_spec("length_aware", length_aware, source="", needs_lengths=True)
    trainer, batch, _, _ = _trainer(tmp_path, moved_policy_state, spec)
    kwargs = trainer.loss_fn.kwargs
    counts = batch["completion_mask"].sum(-1).float()
    half = counts.shape[0] // 2
    torch.testing.assert_close(kwargs["chosen_lengths"], counts[:half])
    torch.testing.assert_close(kwargs["rejected_lengths"], counts[half:])
    assert counts.min() > 3 and not torch.equal(counts[:half], counts[half:])


def test_a_five_argument_loss_gets_no_extra_inputs(tmp_path, moved_policy_state):
    def five(pc, pr, rc, rr, beta):
        return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr)))

    trainer, _, _, _ = _trainer(tmp_path, moved_policy_state, five)
    assert trainer.loss_fn.kwargs == {} and len(trainer.loss_fn.args) == 5


def test_a_reference_free_loss_runs_no_reference_and_uses_its_own_beta(tmp_path, moved_policy_state):
    trainer, batch, _, _ = _trainer(tmp_path, moved_policy_state, "simpo", with_reference=False)
    pc, pr, rc, rr, beta = trainer.loss_fn.args
    assert trainer.ref_model is None and trainer.precompute_ref_logps
    assert torch.count_nonzero(rc) == 0 and torch.count_nonzero(rr) == 0
    assert beta == trainer.beta == get_loss_spec("simpo").params()["beta"] == 2.0
    assert set(trainer.loss_fn.kwargs) == {"chosen_lengths", "rejected_lengths"}
    overridden, _, _, _ = _trainer(tmp_path, moved_policy_state, "simpo", with_reference=False, beta=2.5)
    assert overridden.beta == 2.5
