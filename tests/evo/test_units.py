"""Unit tests of the loop's parts: config loading, archive, bandit, symbolic proposer."""

import pytest
import sympy as sp
import torch

from evo.archive import Archive
from evo.bandit import ProposerBandit, reward
from evo.config import load_config, save_config
from evo.data_prep import prepare_data
from evo.proposers.base import Proposal
from evo.proposers.symbolic import PRIMITIVES, SymbolicProposer, from_srepr, gated, to_code, z
from sandbox.compile import compile_loss


def test_config_layers_preset_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("preset: tiny\npopulation: 5\ntraining: {beta: 0.2}\n")
    config = load_config(recipe, overrides={"generations": 7})
    assert (config.preset, config.population, config.generations) == ("tiny", 5, 7)
    assert config.training.beta == 0.2 and config.training.model == "tiny"  # the rest of the preset survives
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_proxy_fitness_without_heldout_pairs_fails_before_training(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("")
    data = {"source": "file", "train_path": str(train)}
    for paths in ({}, {"heldout_path": str(heldout)}):  # none, and an empty file
        config = load_config(preset="tiny", overrides={"data": {**data, **paths}, "fitness": {"kind": "proxy"}})
        with pytest.raises(ValueError, match="n_proxy_topics"):
            prepare_data(config, tmp_path)
    weighted = {"kind": "weighted", "weights": {"proxy": 1.0}}
    with pytest.raises(ValueError, match="proxy fitness needs held-out pairs"):
        prepare_data(load_config(preset="tiny", overrides={"data": data, "fitness": weighted}), tmp_path)
    given = {"kind": "proxy", "proxy": {"data": str(train)}}  # pairs named in the fitness block: fine
    assert prepare_data(load_config(preset="tiny", overrides={"data": data, "fitness": given}), tmp_path).train_path == train
    verifiable = {"kind": "verifiable"}  # no proxy in the fitness: held-out pairs are not needed
    assert prepare_data(load_config(preset="tiny", overrides={"data": data, "fitness": verifiable}), tmp_path).heldout_path is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [("trainig: {beta: 0.2}\n", "unknown key"), ("training: {betta: 0.2}\n", "training"), ("preset: huge\n", "preset")],
)
def test_config_rejects_typos(tmp_path, fields, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(fields)
    with pytest.raises(ValueError, match=message):
        load_config(recipe)


def test_archive_roundtrip_and_queries(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    a = archive.add(0, "baseline", "done", name="dpo", fitness=0.5, stderr=0.1, fingerprint="f1", metrics={"x": 1})
    b = archive.add(1, "llm", "proposed", name="new", code="def loss_fn(): pass")
    archive.update(b, status="duplicate", duplicate_of=a, reason="same as dpo", fingerprint="f1")
    c = archive.add(1, "symbolic", "done", name="better", fitness=0.7, stderr=0.1, llm_cost=0.25)
    archive.add(1, "llm", "invalid", reason="[policy] import of os", llm_tokens_in=10, llm_cost=0.5)
    assert [x.id for x in archive.top(5)] == [c, a]
    assert archive.get(a).metrics == {"x": 1}
    assert archive.original_with("f1", None).id == a  # duplicates never count as originals
    assert archive.original_with("nope", None) is None
    assert archive.status_counts() == {"done": 2, "duplicate": 1, "invalid": 1}
    assert archive.llm_spend() == {"tokens_in": 10, "tokens_out": 0, "cost_usd": 0.75}
    assert [x.status for x in archive.failures(5)] == ["invalid"]
    with pytest.raises(ValueError, match="unknown status"):
        archive.update(a, status="finished")
    archive.close()
    assert Archive(tmp_path / "a.sqlite").get(b).duplicate_of == a  # persisted


def test_bandit_tries_every_arm_then_follows_yield():
    bandit = ProposerBandit(["llm", "symbolic"], seed=0)
    assert bandit.choose() == "llm"
    bandit.update("llm", 0.0)
    assert bandit.choose() == "symbolic"
    for _ in range(30):
        bandit.update("symbolic", 1.0)
        bandit.update("llm", 0.0)
    picks = [bandit.choose() for _ in range(50)]
    assert picks.count("symbolic") > 45
    bandit.disable("symbolic")
    assert bandit.choose() == "llm"
    assert reward("invalid", None, None) == 0.0 and reward("done", 0.4, 0.5) == 0.5 and reward("done", 0.6, 0.5) == 1.0


def test_bandit_rebuilds_from_the_archive(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    for _ in range(5):
        archive.add(1, "llm", "invalid")
        archive.add(1, "symbolic", "done", fitness=0.5)
    bandit = ProposerBandit.from_archive(["llm", "symbolic"], archive)
    assert bandit.share()["symbolic"] > bandit.share()["llm"]


def test_symbolic_code_matches_its_expression():
    expr = gated(PRIMITIVES["logistic"](z), PRIMITIVES["hinge"](z * 2), 0.5)
    fn = compile_loss(to_code(expr))
    pc = torch.tensor([0.3, -1.2, 4.0])
    zero = torch.zeros(3)
    beta = 0.7
    expected = [
        float(expr.subs(z, beta * v).replace(lambda e: e.func.__name__ == "Softplus", lambda e: sp.log(1 + sp.exp(e.args[0])))
              .replace(lambda e: e.func.__name__ == "Relu", lambda e: sp.Max(0, e.args[0]))
              .replace(lambda e: e.func.__name__ == "Sigmoid", lambda e: 1 / (1 + sp.exp(-e.args[0]))))
        for v in pc.tolist()
    ]
    torch.testing.assert_close(fn(pc, zero, zero, zero, beta), torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert from_srepr(sp.srepr(expr)) == expr


def test_symbolic_breeds_from_archive_parents(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    parent = PRIMITIVES["exponential"](z)
    pid = archive.add(1, "symbolic", "done", name="p", fitness=0.9, expression=sp.srepr(parent))
    proposer = SymbolicProposer(seed=3)
    children = [proposer.propose(archive, 2) for _ in range(6)]
    assert all(isinstance(c, Proposal) and c.parent_ids and c.parent_ids[0] == pid for c in children)
    assert len({c.code for c in children}) > 1
    for child in children:
        compile_loss(child.code)  # every child is valid source for the sandbox's compiler
