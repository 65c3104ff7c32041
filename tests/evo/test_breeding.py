"""Breeding from every loss: baselines and LLM proposals are parents of the symbolic proposer, through the
sandbox's canonical form; their children validate in the sandbox."""

import random
from collections import Counter

import pytest
import sympy as sp

from evo.archive import Archive
from evo.config import load_config
from evo.loop import Search
from evo.proposers.loss_expr import Untranslatable, from_canonical, to_code, to_torch, z
from evo.proposers.parents import Parent, ParentTranslator, breeding_pool, pick
from evo.proposers.symbolic import SymbolicProposer, from_srepr
from sandbox.executor import SandboxPool
from sandbox.validate import ValidationResult, validate_source
from trainer.losses.registry import get_loss_spec, loss_names

# An LLM-style loss: code only, no sympy expression; it reaches the proposer through its canonical form.
LLM_CODE = """import torch
import torch.nn.functional as F


def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    pi = policy_chosen_logps - policy_rejected_logps
    ref = reference_chosen_logps - reference_rejected_logps
    return F.softplus(-beta * (pi - ref)) + 0.3 * torch.tanh(-beta * (pi - ref))
"""


@pytest.fixture(scope="module")
def pool():
    with SandboxPool() as started:
        yield started


def _add_validated(
    archive: Archive,
    pool: SandboxPool,
    proposer: str,
    name: str,
    code: str,
    entry: str,
    fitness: float,
    **values,
) -> int:
    verdict = validate_source(code, entry=entry, pool=pool)
    assert verdict.valid, verdict.error
    return _add_done(archive, verdict, proposer, name, code, fitness, **values)


def _add_done(
    archive: Archive, verdict: ValidationResult, proposer: str, name: str, code: str, fitness: float, **values
) -> int:
    """A done row with the verdict's fingerprint and canonical form, as the search stores a trained candidate."""
    return archive.add(
        0 if proposer == "baseline" else 1,
        proposer,
        "done",
        name=name,
        code=code,
        fitness=fitness,
        fingerprint=verdict.fingerprint,
        canonical=verdict.canonical_form,
        **values,
    )


def _refused_children_of_ipo(archive: Archive, proposer: SymbolicProposer, pool: SandboxPool) -> list[tuple]:
    """IPO (unnormalised) as the archive's only parent, and the children of 40 draws the sandbox refuses, with their
    verdicts: a gate over IPO can rise past its target margin and turn against the preference."""
    spec = get_loss_spec("ipo_sum")
    _add_validated(archive, pool, "baseline", "ipo_sum", spec.source, "ipo_sum", 0.7, loss="ipo_sum")
    children = [proposer.propose(archive, 1) for _ in range(40)]
    verdicts = [(child, validate_source(child.code, pool=pool)) for child in children]
    refused = [(child, verdict) for child, verdict in verdicts if not verdict.valid]
    assert refused, "no child of IPO was refused: the scenario needs one"
    return refused


def test_canonical_forms_read_into_the_vocabulary():
    assert from_canonical("log(1 + exp(-beta*margin))") == from_canonical("log(exp(-beta*margin) + 1)")
    assert to_torch(from_canonical("log(1 + exp(-beta*margin))")) == "F.softplus(-z)"
    assert to_torch(from_canonical("Max(0, -beta*margin + 1)")) == "torch.relu(1 - z)"
    assert to_torch(from_canonical("1/(1 + exp(-beta*margin))")) == "torch.sigmoid(z)"
    assert "torch.clamp(-2 * z, max=30.0)" in to_torch(from_canonical("exp(-2*beta*margin)"))
    for hostile in (
        "__import__('os').system('true')",
        "margin.__class__",
        "open('x')",
        "margin + zoo",
        "beta",
    ):
        with pytest.raises(Untranslatable):
            from_canonical(hostile)


def test_children_of_every_baseline_validate(tmp_path, pool):
    archive = Archive(tmp_path / "a.sqlite")
    translatable = []
    for i, name in enumerate(loss_names("sequence")):
        spec = get_loss_spec(name)
        # Validated once: the gradient tests draw fresh inputs, and a loss near their edge (sppo_hard, nca_pair)
        # passes some draws and not others. A run archives a refused one as invalid: never a parent (TRL menu
        # losses with extra inputs, apo_down...).
        verdict = validate_source(spec.source, entry=name, pool=pool)
        if not verdict.valid:
            continue
        cid = _add_done(archive, verdict, "baseline", name, spec.source, 0.5 + 0.01 * i, loss=name)
        if archive.get(cid).canonical:
            translatable.append(cid)
    pool_of_parents = breeding_pool(archive, ParentTranslator())
    # Behaviour-equal baselines (sigmoid/spin, hinge/spin_hinge) count once; every distinct translatable one is in.
    assert len(pool_of_parents) >= 6
    assert {p.name for p in pool_of_parents} >= {"ipo_sum", "discopop", "cell", "pfl"}

    proposer = SymbolicProposer(seed=1)
    verdicts = []
    for _ in range(48):  # as the loop does: each child is archived, valid ones become parents too
        child = proposer.propose(archive, 1)
        verdict = validate_source(child.code, pool=pool)
        verdicts.append(verdict)
        archive.add(
            1,
            "symbolic",
            "training" if verdict.valid else "invalid",
            name=child.name,
            code=child.code,
            parent_ids=list(child.parent_ids),
            expression=child.expression,
            fingerprint=verdict.fingerprint,
            canonical=verdict.canonical_form,
        )
    used = Counter(pid for c in archive.in_generation(1) for pid in c.parent_ids)
    # Diversity: many baselines are bred from, not just the fittest.
    assert len(set(used) & set(translatable)) >= 5
    stages = Counter(v.stage for v in verdicts)
    # Every child is accepted by the policy and traces. The gradient tests are the only ones that may refuse one:
    # a gate over IPO, which rises again past its target margin, can turn against the preference (40 of 48
    # children passed when this was written).
    assert set(stages) <= {None, "gradient_tests"}, [
        (v.stage, v.error) for v in verdicts if v.stage == "trace"
    ]
    assert stages[None] >= 0.75 * len(verdicts), stages


def test_an_llm_loss_is_crossed_with_a_symbolic_one(tmp_path, pool):
    archive = Archive(tmp_path / "a.sqlite")
    llm = _add_validated(archive, pool, "llm", "softplus_tanh", LLM_CODE, "loss_fn", 0.62)
    assert archive.get(llm).expression is None and archive.get(llm).canonical
    symbolic_expr = SymbolicProposer(seed=0)._primitive()
    sym = _add_validated(
        archive,
        pool,
        "symbolic",
        "sym_prim",
        to_code(symbolic_expr),
        "loss_fn",
        0.60,
        expression=sp.srepr(symbolic_expr),
    )
    proposer = SymbolicProposer(seed=0, crossover_rate=1.0)
    child = proposer.propose(archive, 2)
    assert sorted(child.parent_ids) == sorted((llm, sym))
    assert "torch.tanh" in child.code  # the LLM parent's piece is in the child
    verdict = validate_source(child.code, pool=pool)
    assert verdict.valid, verdict.error
    assert verdict.canonical_form not in (archive.get(llm).canonical, archive.get(sym).canonical)


def test_selection_prefers_fitness_and_spreads_over_parents():
    parents = [Parent(i, f"p{i}", "llm", 0.1 * i, z * (i + 1), children=0) for i in range(1, 9)]
    rng = random.Random(0)
    wins = Counter(pick(parents, rng, tournament=3).id for _ in range(4000))
    assert wins.most_common(1)[0][0] == 8 and wins[8] > wins[4] > wins[1]
    assert len(wins) >= 6  # not only the best
    # A parent bred from many times is drawn less often than the same parent fresh.
    tired = [
        Parent(p.id, p.name, p.proposer, p.fitness, p.expr, children=30 if p.id == 8 else 0) for p in parents
    ]
    rng = random.Random(0)
    tired_wins = Counter(pick(tired, rng, tournament=3).id for _ in range(4000))
    assert tired_wins[8] < wins[8] / 3
    # Unscored parents (still training) lose to any scored one.
    training = Parent(9, "training", "baseline", None, z, 0)
    assert pick([training, parents[0]], rng, tournament=2).id == 1
    assert pick([training, parents[0]], rng, tournament=2, exclude=parents[0]).id == 9


def test_an_integer_too_large_for_a_graph_is_printed_as_a_float():
    """A crossover can multiply constants into an integer past 2**53, which a loss graph refuses as a constant."""
    from evo.proposers.loss_expr import to_torch, z

    assert "1e+20" in to_torch(sp.Integer(10**20) * z) and "123" in to_torch(sp.Integer(123) * z)


def test_a_refused_child_is_repaired_by_breeding_another(tmp_path, pool):
    # The repair of a child the gradient tests refused is a fresh child of the archive.
    archive = Archive(tmp_path / "a.sqlite")
    proposer = SymbolicProposer(seed=0)
    refused = _refused_children_of_ipo(archive, proposer, pool)
    ipo = archive.in_generation(0)[0].id
    child, verdict = refused[0]
    assert verdict.stage == "gradient_tests"
    repaired = proposer.repair(child, f"[{verdict.stage}] {verdict.error}")
    assert repaired.name == child.name and repaired.code != child.code
    assert set(repaired.parent_ids) <= {ipo} and "bred again" in repaired.thought
    assert (
        to_code(from_srepr(repaired.expression)) == repaired.code
    )  # the stored expression is the new child's
    fixed = sum(validate_source(proposer.repair(c, v.error).code, pool=pool).valid for c, v in refused)
    # One fresh draw per refused child; with IPO as the only parent 9 of 22 passed when this was written (in a
    # search the pool holds DPO and the others too, and the loop draws up to repair_rounds times).
    assert fixed >= 1, len(refused)


def test_the_search_repairs_a_refused_symbolic_child(tmp_path, pool):
    # The loop's side: a refused symbolic proposal goes through the repair rounds (a fresh child each), not
    # straight to invalid. Training is not started: the search's submit is replaced by a list.
    config = load_config(preset="tiny", overrides={"proposers": {"llm": False, "repair_rounds": 2}})
    proposer = SymbolicProposer(seed=0)
    search = Search(config, tmp_path, {"symbolic": proposer})
    submitted = []
    search._submit = submitted.append
    try:
        child, _ = _refused_children_of_ipo(search.archive, proposer, pool)[0]
        cid = search.archive.add(
            1, "symbolic", "proposed", name=child.name, code=child.code, expression=child.expression
        )
        search._validate_and_submit(cid, "symbolic", child, 0)
        row = search.archive.get(cid)
        assert row.repair_round >= 1 and row.code != child.code and row.name == child.name
        assert to_code(from_srepr(row.expression)) == row.code
        assert (row.status == "training") == bool(submitted), (row.status, row.reason)
    finally:
        search.close()
