"""Unit tests of the loop's parts: config loading, archive, bandit, symbolic proposer."""

import json
import sqlite3

import pytest
import sympy as sp
import torch

from evo.archive import Archive
from evo.bandit import ProposerBandit, reward
from evo.config import load_config, save_config
from evo.data_prep import prepare_data
from evo.proposers.base import Proposal
from evo.proposers.symbolic import PRIMITIVES, SymbolicProposer, from_srepr, gated, to_code, z
from evo.status import Status
from sandbox.interpreter import build_loss
from tests.evo.graphs import traced_graph


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
        config = load_config(
            preset="tiny", overrides={"data": {**data, **paths}, "fitness": {"kind": "proxy"}}
        )
        with pytest.raises(ValueError, match="n_proxy_topics"):
            prepare_data(config, tmp_path)
    weighted = {"kind": "weighted", "weights": {"proxy": 1.0}}
    with pytest.raises(ValueError, match="proxy fitness needs held-out pairs"):
        prepare_data(load_config(preset="tiny", overrides={"data": data, "fitness": weighted}), tmp_path)
    given = {"kind": "proxy", "proxy": {"data": str(train)}}  # pairs named in the fitness block: fine
    assert (
        prepare_data(
            load_config(preset="tiny", overrides={"data": data, "fitness": given}), tmp_path
        ).train_path
        == train
    )
    verifiable = {"kind": "verifiable"}  # no proxy in the fitness: held-out pairs are not needed
    assert (
        prepare_data(
            load_config(preset="tiny", overrides={"data": data, "fitness": verifiable}), tmp_path
        ).heldout_path
        is None
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("trainig: {beta: 0.2}\n", "unknown key"),
        ("training: {betta: 0.2}\n", "training"),
        ("preset: huge\n", "preset"),
    ],
)
def test_config_rejects_typos(tmp_path, fields, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(fields)
    with pytest.raises(ValueError, match=message):
        load_config(recipe)


def test_archive_roundtrip_and_queries(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    a = archive.add(
        0, "baseline", "done", name="dpo", fitness=0.5, stderr=0.1, fingerprint="f1", metrics={"x": 1}
    )
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
    assert [x.status for x in archive.failures(5)] == [Status.INVALID]
    assert archive.get(a).status is Status.DONE  # rows come back as the enum, stored as its plain string
    with pytest.raises(ValueError, match="unknown status"):
        archive.update(a, status="finished")
    d = archive.add(0, "baseline", Status.TRAINING, name="spin", pipeline="spin", best_before=0.5)
    archive.close()
    reopened = Archive(tmp_path / "a.sqlite")
    assert reopened.get(b).duplicate_of == a  # persisted
    assert (reopened.get(d).pipeline, reopened.get(d).best_before, reopened.get(a).pipeline) == (
        "spin",
        0.5,
        None,
    )
    tables = {row[0] for row in reopened._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "meta" not in tables


# The candidates table as the first archives had it: no pipeline and best_before columns, both kept in metrics; no
# graph column and no notes table.
OLD_SCHEMA = """
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER NOT NULL, proposer TEXT NOT NULL,
    parent_ids TEXT NOT NULL DEFAULT '[]', name TEXT NOT NULL DEFAULT '', thought TEXT NOT NULL DEFAULT '',
    code TEXT NOT NULL DEFAULT '', loss TEXT, expression TEXT, fingerprint TEXT, canonical TEXT,
    status TEXT NOT NULL, reason TEXT, duplicate_of INTEGER, fitness REAL, stderr REAL, n INTEGER,
    metrics TEXT NOT NULL DEFAULT '{}', timings TEXT NOT NULL DEFAULT '{}', repair_round INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, llm_tokens_in INTEGER NOT NULL DEFAULT 0,
    llm_tokens_out INTEGER NOT NULL DEFAULT 0, llm_cost REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_archive_written_before_the_pipeline_best_before_and_graph_columns_resumes(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    rows = [
        (0, "baseline", "training", "spin", {"pipeline": "spin"}),
        (1, "llm", "done", "found", {"best_before": 0.25, "losses": [1.0, 0.5]}),
        (1, "llm", "training", "first", {"best_before": None}),
    ]
    for generation, proposer, status, name, metrics in rows:
        db.execute(
            "INSERT INTO candidates (generation, proposer, status, name, metrics, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 0, 0)",
            (generation, proposer, status, name, json.dumps(metrics)),
        )
    db.commit()
    db.close()
    archive = Archive(path)
    spin, found, first = archive.all()
    assert (spin.pipeline, spin.best_before, spin.metrics) == ("spin", None, {})
    assert (found.pipeline, found.best_before, found.metrics) == (None, 0.25, {"losses": [1.0, 0.5]})
    assert (first.best_before, first.metrics) == (None, {})
    assert [c.graph for c in (spin, found, first)] == [None, None, None]  # a resume validates `first` again
    assert [c.name for c in archive.by_status(Status.TRAINING)] == [
        "spin",
        "first",
    ]  # what a resume reschedules
    assert archive.isolation_missing() is None  # not recorded, not "none missing"
    archive.update(first.id, status=Status.DONE, fitness=0.5, graph='{"format": "x"}')
    archive.record_isolation_missing(("seccomp",))
    archive.close()
    reopened = Archive(path)  # opening it again changes nothing more
    assert (reopened.get(first.id).status, reopened.get(first.id).graph) == (Status.DONE, '{"format": "x"}')
    assert reopened.isolation_missing() == ("seccomp",)


def test_the_isolation_record_holds_what_any_session_lacked(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    assert archive.isolation_missing() is None
    assert archive.record_isolation_missing(()) == () == archive.isolation_missing()
    assert archive.note("sandbox_isolation_missing") == []
    assert archive.record_isolation_missing(("seccomp", "pid_namespace")) == ("pid_namespace", "seccomp")
    assert archive.record_isolation_missing(("network_namespace",)) == (
        "network_namespace",
        "pid_namespace",
        "seccomp",
    )
    assert (
        archive.record_isolation_missing(())
        == archive.isolation_missing()
        == ("network_namespace", "pid_namespace", "seccomp")
    )  # a later, fully isolated session does not erase it


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
    assert reward(Status.INVALID, None, None) == 0.0
    assert reward(Status.DONE, 0.4, 0.5) == 0.5 and reward(Status.DONE, 0.6, 0.5) == 1.0


def test_bandit_rebuilds_from_the_archive(tmp_path):
    archive = Archive(tmp_path / "a.sqlite")
    for _ in range(5):
        archive.add(1, "llm", "invalid")
        archive.add(1, "symbolic", "done", fitness=0.5)
    bandit = ProposerBandit.from_archive(["llm", "symbolic"], archive)
    assert bandit.share()["symbolic"] > bandit.share()["llm"]


def test_symbolic_code_matches_its_expression(sandbox_pool):
    expr = gated(PRIMITIVES["logistic"](z), PRIMITIVES["hinge"](z * 2), 0.5)
    fn = build_loss(traced_graph(to_code(expr), sandbox_pool))
    pc = torch.tensor([0.3, -1.2, 4.0])
    zero = torch.zeros(3)
    beta = 0.7
    expected = [
        float(
            expr.subs(z, beta * v)
            .replace(lambda e: e.func.__name__ == "Softplus", lambda e: sp.log(1 + sp.exp(e.args[0])))
            .replace(lambda e: e.func.__name__ == "Relu", lambda e: sp.Max(0, e.args[0]))
            .replace(lambda e: e.func.__name__ == "Sigmoid", lambda e: 1 / (1 + sp.exp(-e.args[0])))
        )
        for v in pc.tolist()
    ]
    torch.testing.assert_close(fn(pc, zero, zero, zero, beta), torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert from_srepr(sp.srepr(expr)) == expr


def test_symbolic_breeds_from_archive_parents(tmp_path, sandbox_pool):
    archive = Archive(tmp_path / "a.sqlite")
    parent = PRIMITIVES["exponential"](z)
    pid = archive.add(1, "symbolic", "done", name="p", fitness=0.9, expression=sp.srepr(parent))
    proposer = SymbolicProposer(seed=3)
    children = [proposer.propose(archive, 2) for _ in range(6)]
    assert all(isinstance(c, Proposal) and c.parent_ids and c.parent_ids[0] == pid for c in children)
    assert len({c.code for c in children}) > 1
    for child in children:
        traced_graph(child.code, sandbox_pool)  # every child passes the policy and traces into a graph
