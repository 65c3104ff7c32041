"""Discovered losses of both LLM contracts train on the tiny model with the inputs their graphs ask for: a SimPO-like
graph (completion lengths, no reference) gets the token counts and runs no reference model; a token-level graph gets
the trainer's per-token inputs (the KL when it reads it) and computes what the registry's TDPO computes."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from tests.builders import preference_rows
from tests.evo.graphs import validated_graph
from tests.sandbox.contract_sources import SIMPO_LIKE, TOKEN_DPO, TOKEN_TDPO
from trainer.config import TrainingConfig, TrainRun
from trainer.data import normalize_rows
from trainer.losses import get_loss_spec
from trainer.losses.discovered import candidate_loss
from trainer.models import load_policy
from trainer.trainer import PreferenceConfig, PreferenceTrainer

pytestmark = pytest.mark.slow  # several short trainings


class Recorder:
    """Wraps a loss callable and keeps the arguments of every call."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.fn(*args, **kwargs)


def _train(tmp_path, spec, steps: int = 3, with_reference: bool = True) -> PreferenceTrainer:
    _, rows = normalize_rows(preference_rows(12), None)
    policy, tokenizer = load_policy("tiny")
    reference = load_policy("tiny")[0] if with_reference else None
    training = TrainingConfig(model="tiny", batch_size=4, max_steps=steps, learning_rate=1e-3)
    trainer = PreferenceTrainer(
        model=policy,
        ref_model=reference,
        args=PreferenceConfig.from_training(training, TrainRun(data="-", output_dir=str(tmp_path))),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        loss=spec,
    )
    trainer.loss_fn = Recorder(trainer.loss_fn)
    before = [p.detach().clone() for p in policy.parameters()]
    trainer.train()
    assert trainer.state.global_step == steps
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters(), strict=True))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == steps and all(torch.isfinite(torch.tensor(losses)))
    return trainer


def test_a_simpo_like_graph_trains_with_lengths_and_no_reference_model(tmp_path, sandbox_pool):
    spec = candidate_loss("simpo_like", validated_graph(SIMPO_LIKE, sandbox_pool), patience=20)
    assert spec.level == "sequence" and spec.needs_lengths and spec.reference_free
    trainer = _train(tmp_path, spec, with_reference=False)
    assert trainer.ref_model is None and trainer.precompute_ref_logps
    for args, kwargs in trainer.loss_fn.calls:
        assert set(kwargs) == {"chosen_lengths", "rejected_lengths"}
        assert torch.count_nonzero(args[2]) == 0 and torch.count_nonzero(args[3]) == 0
        assert kwargs["chosen_lengths"].min() >= 1 and not torch.equal(*kwargs.values())


def test_a_dpo_graph_reads_the_reference_and_gets_no_lengths(sandbox_pool):
    source = (
        "import torch.nn.functional as F\ndef loss_fn(pc, pr, rc, rr, beta):\n"
        "    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))\n"
    )
    spec = candidate_loss("dpo", validated_graph(source, sandbox_pool), patience=20)
    assert spec.level == "sequence" and not spec.needs_lengths and not spec.reference_free


@pytest.mark.parametrize(
    ("source", "registry"), [(TOKEN_DPO, "granular"), (TOKEN_TDPO, "tdpo1")], ids=["token-dpo", "token-tdpo"]
)
def test_a_token_level_graph_trains_on_the_trainers_per_token_inputs(
    tmp_path, sandbox_pool, source, registry
):
    spec = candidate_loss("token_candidate", validated_graph(source, sandbox_pool), patience=20)
    assert spec.level == "token" and spec.needs_kl == (registry == "tdpo1")
    trainer = _train(tmp_path, spec)
    (inputs, beta), _ = trainer.loss_fn.calls[-1]
    assert inputs.policy_chosen_token_logps.dim() == 2 and (inputs.chosen_kl is not None) == spec.needs_kl
    with torch.no_grad():
        expected = get_loss_spec(registry).build()(inputs, beta)
        torch.testing.assert_close(trainer.loss_fn.fn(inputs, beta), expected)
