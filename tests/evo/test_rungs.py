"""Fidelity rungs and behaviour dedup on the tiny preset: a real search (Ray, sandbox, trainer) with a proposer that
hands out fixed losses, then a resume; the promotion rule itself on an archive with distinct fitnesses."""

from __future__ import annotations

import math
import shutil
import sqlite3

import pytest

from evo.archive import Archive, RungResult
from evo.behaviour import BehaviourIndex
from evo.cascade import PROMOTED, REFERENCE, STOPPED, Cascade
from evo.config import RungConfig, load_config
from evo.loop import Search
from evo.progress import SearchProgress
from evo.proposers.base import Proposal
from evo.ranking import leaderboard
from evo.rungs import promotions, rung_fitness, rung_training
from evo.status import Status
from evo.workers import init_ray
from tests.evo.graphs import validated_graph
from trainer.losses import get_loss_spec

HEAD = """import torch
import torch.nn.functional as F
def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    x = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
"""
TWICE_DPO = HEAD + "    return 2 * -F.logsigmoid(beta * x)\n"  # DPO rescaled: another value fingerprint
HINGE = HEAD + "    return torch.relu(1 - beta * x)\n"
LOSSES = {  # the generation's proposals, in order
    "twice_dpo": TWICE_DPO,
    "hinge": HINGE,
    "squared_hinge": HEAD + "    return torch.relu(1 - beta * x) ** 2\n",
    "ipo_like": HEAD + "    return (beta * x - 0.5) ** 2\n",
    "exp_loss": HEAD + "    return torch.exp(-beta * x)\n",
}
RUNGS = [{"budget": 0.5, "prompts": 0.5}, {}]


class ListProposer:
    """Proposes the given losses in order (a stand-in for the LLM whose choice the test must know)."""

    name = "listed"

    def __init__(self, losses: dict[str, str]) -> None:
        self.queue = list(losses.items())

    def propose(self, archive: Archive, generation: int) -> Proposal:
        name, code = self.queue.pop(0)
        return Proposal(name, code, thought=f"the test's {name}")

    def repair(self, proposal: Proposal, error: str) -> Proposal:
        raise AssertionError(f"a listed loss needed repair: {error}")


def _config(**fitness):
    return load_config(
        preset="tiny",
        overrides={
            "generations": 1,
            "population": len(LOSSES),
            "proposers": {"llm": False},
            "fitness": {"rungs": RUNGS, "promote_fraction": 0.5, **fitness},
        },
    )


def _search(run_dir, config) -> None:
    init_ray(config)
    search = Search(config, run_dir, {"listed": ListProposer(LOSSES)})
    try:
        search.run()
    finally:
        search.close()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rungs") / "run"
    _search(run_dir, _config(behaviour={"enabled": True}))
    return run_dir


def _by_name(archive: Archive) -> dict:
    return {c.name: c for c in archive.all()}


def test_a_rescaled_dpo_is_a_duplicate_before_training_and_hinge_is_not(searched):
    archive = Archive(searched / "archive.sqlite")
    rows = _by_name(archive)
    dpo, twice = rows["dpo"], rows["twice_dpo"]
    assert twice.fingerprint != dpo.fingerprint  # the value fingerprint calls them different
    assert twice.status == Status.DUPLICATE and twice.duplicate_of == dpo.id, twice.reason
    assert "gradient weights equal up to scale" in twice.reason
    assert (
        twice.attempts == 0 and archive.rung_results(twice.id) == []
    )  # never trained, not even the cheap rung
    assert not (searched / "candidates" / str(twice.id)).exists()
    hinge = rows["hinge"]
    assert hinge.status == Status.DONE and archive.rung_results(hinge.id), hinge.reason
    archive.close()


def test_promotion_keeps_the_configured_fraction_and_records_every_rung(searched):
    archive = Archive(searched / "archive.sqlite")
    rows = _by_name(archive)
    trained = [rows[n] for n in LOSSES if n != "twice_dpo"]
    assert all(c.status == Status.DONE for c in trained), [(c.name, c.reason) for c in trained]
    cheap = {c.id: archive.rung_results(c.id) for c in trained}
    assert all(results[0].rung == 0 for results in cheap.values())
    promoted = [cid for cid, results in cheap.items() if results[0].decision == PROMOTED]
    stopped = [cid for cid, results in cheap.items() if results[0].decision == STOPPED]
    assert len(promoted) == promotions(len(trained), 0.5) == 2 and len(stopped) == 2
    assert all("go on (promote_fraction 0.5)" in cheap[cid][0].reason for cid in promoted + stopped)
    full_items = len((searched / "data" / "heldout.jsonl").read_text().split("\n")) - 1
    for cid in promoted:
        assert [r.rung for r in cheap[cid]] == [0, 1] and archive.get(cid).rung == 1
        assert cheap[cid][1].n == full_items and cheap[cid][0].n == math.ceil(full_items / 2)
        assert archive.get(cid).fitness == cheap[cid][1].fitness
        assert archive.get(cid).metrics["steps"] == 6  # the full budget, trained again from the start
    for cid in stopped:
        assert [r.rung for r in cheap[cid]] == [0] and archive.get(cid).rung == 0
    dpo = archive.rung_results(rows["dpo"].id)  # the baseline is scored at every rung
    assert [(r.rung, r.decision) for r in dpo] == [(0, REFERENCE), (1, "final")]
    ranked, _ = leaderboard(archive)
    assert [r.rung for r in ranked] == sorted((r.rung for r in ranked), reverse=True)
    assert {r.id for r in ranked if r.rung == 1} == {*promoted, rows["dpo"].id}
    assert all(r.delta_stderr is not None for r in ranked)  # paired with DPO at the same rung
    archive.close()


def test_a_resumed_run_keeps_every_rung_and_trains_at_the_next_one(searched, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(searched, run_dir)
    archive = Archive(run_dir / "archive.sqlite")
    before = archive.rung_results()
    killed = next(
        r.candidate_id for r in before if r.rung == 1 and archive.get(r.candidate_id).generation > 0
    )
    archive.close()
    with sqlite3.connect(run_dir / "archive.sqlite") as db:  # the run was killed while it trained at rung 1
        db.execute("DELETE FROM rung_results WHERE candidate_id = ? AND rung = 1", (killed,))
        db.execute("UPDATE candidates SET status = 'training', rung = 0 WHERE id = ?", (killed,))
    _search(run_dir, _config(behaviour={"enabled": True}))
    archive = Archive(run_dir / "archive.sqlite")
    after = archive.rung_results()
    kept = [r for r in before if not (r.candidate_id == killed and r.rung == 1)]
    assert [r for r in after if (r.candidate_id, r.rung) != (killed, 1)] == kept  # nothing lost or retrained
    again = archive.rung_results(killed)
    assert [(r.rung, r.decision) for r in again] == [(0, PROMOTED), (1, "final")]
    assert archive.get(killed).status == Status.DONE and archive.get(killed).rung == 1
    assert len(archive.in_generation(1)) == len(LOSSES)  # no new proposal: the generation was full
    archive.close()


def test_promotion_ranks_by_fitness_at_the_rung(tmp_path):
    """Distinct fitnesses (the tiny proxy ties): the best half go on, the rest stop; the baseline is not ranked."""
    config = load_config(
        preset="tiny",
        overrides={"fitness": {"rungs": [{"prompts": 0.5}, {"prompts": 0.5}, {}], "promote_fraction": 0.5}},
    )
    archive = Archive(tmp_path / "archive.sqlite")
    fitness = {1: 0.2, 2: 0.9, 3: 0.5, 4: 0.7, 5: 0.1}
    ids = {}
    for key, value in fitness.items():
        ids[key] = archive.add(1, "listed", Status.DONE, name=f"c{key}")
        archive.add_rung_result(RungResult(ids[key], 0, value, 0.1, 10, {}))
    dpo = archive.add(0, "baseline", Status.DONE, name="dpo")
    archive.add_rung_result(RungResult(dpo, 0, 0.95, 0.1, 10, {}))
    cascade = Cascade(config, archive, SearchProgress(config))
    promoted = cascade.decide()
    assert promoted == [ids[2], ids[4], ids[3]]  # round(5 x 0.5) = 3, best first
    assert {archive.get(i).status for i in promoted} == {Status.TRAINING}
    assert [r.decision for r in archive.rung_results(ids[1])] == [STOPPED]
    assert archive.rung_results(dpo)[0].decision is None and cascade.next_rung(ids[2]) == 1
    assert cascade.decide() == []  # every waiting result is decided once
    archive.close()


def test_a_clone_is_a_duplicate_at_the_full_rung_too(tmp_path, sandbox_pool):
    """One rung (the default): a proposal with the same outcome on every item as a scored candidate and close
    gradient weights is a duplicate there, so clones stay off the leaderboard and out of the confirmation."""
    config = load_config()
    assert len(config.fitness.rungs) == 1 and config.fitness.behaviour.enabled
    archive = Archive(tmp_path / "archive.sqlite")
    cascade = Cascade(config, archive, SearchProgress(config))
    outcomes = {f"item{i}": i % 2 for i in range(12)}
    dpo_graph = validated_graph(get_loss_spec("sigmoid").source, sandbox_pool, entry="sigmoid")
    rows = {
        "dpo": (0, dpo_graph),
        "twice_dpo": (1, validated_graph(TWICE_DPO, sandbox_pool)),
        "hinge": (1, validated_graph(HINGE, sandbox_pool)),
    }
    ids = {}
    for name, (generation, graph) in rows.items():
        ids[name] = archive.add(generation, "listed", Status.DONE, name=name, graph=graph)
        assert cascade.record(archive.get(ids[name]), 0.5, 0.1, 12, outcomes, 1.0) is False
    twice = archive.get(ids["twice_dpo"])
    assert twice.status == Status.DUPLICATE and twice.duplicate_of == ids["dpo"], twice.reason
    assert archive.rung_results(ids["twice_dpo"])[0].decision == "duplicate"
    # hinge: the same outcomes, but its weights are not DPO's (cosine 0.965 < 0.995); the baseline is never one
    for name in ("dpo", "hinge"):
        assert archive.get(ids[name]).status == Status.DONE
        assert archive.rung_results(ids[name])[0].decision == "final"
    assert {row.name for row in leaderboard(archive)[0]} == {"dpo", "hinge"}
    archive.close()


def test_gradient_weights_see_through_scale_not_through_shape(sandbox_pool):
    dpo_spec = get_loss_spec("sigmoid")
    dpo = validated_graph(dpo_spec.source, sandbox_pool, entry="sigmoid")
    index = BehaviourIndex(beta=0.1)

    class Row:  # what same_gradients reads of an archive candidate
        def __init__(self, cid, graph):
            self.id, self.graph, self.name = cid, graph, f"c{cid}"

    others = [Row(1, dpo)]
    assert index.same_gradients(2, validated_graph(TWICE_DPO, sandbox_pool), others, 0.9999).original_id == 1
    assert index.same_gradients(3, validated_graph(HINGE, sandbox_pool), others, 0.9999) is None


def test_a_rung_cuts_the_budget_and_takes_a_prefix_of_the_heldout_items(tmp_path):
    # the default task with rung 0 = 1/4 of the budget on 1/3 of the prompts
    config = load_config(overrides={"fitness": {"rungs": [{"budget": 0.25, "prompts": 1 / 3}, {}]}})
    cheap, full = config.fitness.rungs
    assert rung_training(config.training, cheap).num_train_epochs == 0.25
    assert rung_training(config.training, full) == config.training
    assert rung_fitness(config.fitness, cheap, None).verifiable["n_heldout_topics"] == 6  # of 16
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join('{"prompt": "p", "chosen": "a", "rejected": "b"}\n' for _ in range(10)))
    proxy = load_config(preset="tiny", overrides={"training": {"max_steps": 8}}).fitness
    assert rung_fitness(proxy, RungConfig(prompts=0.25), str(heldout)).proxy["max_pairs"] == 3
    steps = load_config(preset="tiny", overrides={"training": {"max_steps": 8}}).training
    assert rung_training(steps, RungConfig(budget=0.25)).max_steps == 2
    with pytest.raises(ValueError, match="last rung must be the full evaluation"):
        load_config(overrides={"fitness": {"rungs": [{"budget": 0.5}]}})
