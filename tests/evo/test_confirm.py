"""Confirmation end to end on the tiny preset, as a user runs it: a one-generation search whose recipe asks for a
confirmation (``confirm.top_k``), ``--resume`` after a seed's result is lost, then ``python -m evo.confirm
--top 1 --seeds 2`` and the leaderboard's JSON; and the confirmation split's disjointness from the selection one."""

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

from evo.config import load_config
from evo.confirm_data import check_disjoint, confirmation_split, prompts_of, selection_prompts
from evo.synthetic import CONFIRM_TOPICS
from tests.builders import launch, write_recipe

SEEDS = [1000, 1001]


def _rows(run_dir):
    db = sqlite3.connect(run_dir / "archive.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM confirmations ORDER BY candidate_id, seed")]
    finally:
        db.close()


@pytest.fixture(scope="module")
def confirmed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("confirm")
    recipe = write_recipe(
        tmp / "recipe.yaml",
        preset="tiny",
        generations=1,
        population=1,
        proposers={"llm": False},
        confirm={"top_k": 1, "seeds": 2},
    )
    run_dir = tmp / "run"
    proc = launch(["--config", str(recipe), "--run-dir", str(run_dir)], timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc.stdout


def test_the_search_confirms_its_top_candidate_on_fresh_seeds(confirmed_run):
    run_dir, out = confirmed_run
    rows = _rows(run_dir)
    assert len(rows) == 4, rows  # DPO and the top candidate, 2 fresh seeds each
    assert {r["seed"] for r in rows} == set(SEEDS) and all(r["status"] == "done" for r in rows)
    for row in rows:
        per_item = json.loads(row["per_item"])
        assert len(per_item) == len(CONFIRM_TOPICS) == row["n"]  # scored on the confirmation pairs
        assert row["fitness"] == pytest.approx(sum(per_item.values()) / len(per_item))
    by_candidate = {}
    for row in rows:
        by_candidate.setdefault(row["candidate_id"], []).append(row["fitness"])
    assert len(by_candidate) == 2
    dpo_fits, candidate_fits = by_candidate.values()
    assert dpo_fits[0] != dpo_fits[1]  # a fresh seed trains differently: the data order is the seed's
    assert "delta vs DPO" in out and "p_holm" in out


def test_resume_retrains_only_the_missing_seed_then_the_leaderboard_carries_the_fields(confirmed_run):
    run_dir, _ = confirmed_run
    before = {(r["candidate_id"], r["seed"]): r for r in _rows(run_dir)}
    lost = max(before)  # the candidate's second seed
    db = sqlite3.connect(run_dir / "archive.sqlite")
    db.execute("DELETE FROM confirmations WHERE candidate_id = ? AND seed = ?", lost)
    db.commit()
    db.close()
    proc = launch(["--resume", str(run_dir)], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(": training") == 1
    assert re.search(rf"candidate {lost[0]} \([^)]*\), seed {lost[1]}: training", proc.stdout)
    after = {(r["candidate_id"], r["seed"]): r for r in _rows(run_dir)}
    assert set(after) == set(before)
    for key, row in before.items():
        if key != lost:
            assert after[key] == row  # finished seeds are never trained again
    assert after[lost]["id"] != before[lost]["id"]

    cli = subprocess.run(
        [sys.executable, "-m", "evo.confirm", str(run_dir), "--top", "1", "--seeds", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert ": training" not in cli.stdout and "delta vs DPO" in cli.stdout
    assert _rows(run_dir) == list(after.values())

    board = subprocess.run(
        [sys.executable, "-m", "evo.leaderboard", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = json.loads(board.stdout)["rows"]
    candidate = next(r for r in rows if r["id"] == lost[0])
    assert candidate["confirmed_stderr"] > 0 and candidate["confirmed_delta"] is not None
    assert 0 < candidate["p_value"] <= candidate["p_holm"] <= 1  # K = 1: Holm leaves p as it is
    assert candidate["confirmed"] == (candidate["p_holm"] < 0.05 and candidate["confirmed_delta"] > 0)
    fitness = {key: row["fitness"] for key, row in after.items()}
    dpo_id = next(cid for cid, _ in after if cid != lost[0])
    mean_delta = sum(fitness[(lost[0], s)] - fitness[(dpo_id, s)] for s in SEEDS) / len(SEEDS)
    assert candidate["confirmed_delta"] == pytest.approx(mean_delta)  # every seed x item cell counted once
    others = [r for r in rows if r["id"] != lost[0]]
    assert all(r["p_holm"] is None and r["confirmed"] is False for r in others)
    table = subprocess.run(
        [sys.executable, "-m", "evo.leaderboard", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert "confirmed vs DPO" in table.stdout and "p_holm" in table.stdout


def test_the_confirmation_prompts_are_disjoint_from_the_selection_prompts(tmp_path):
    tiny = load_config(preset="tiny")
    split = confirmation_split(tiny, tmp_path)
    selection, confirmation = selection_prompts(tiny, tmp_path), prompts_of(split.fitness, split.heldout_path)
    assert len(selection) == 6 and len(confirmation) == len(CONFIRM_TOPICS) and not selection & confirmation

    default = load_config()  # verifiable: the 16 selection topics, then 8 more
    split = confirmation_split(default, tmp_path)
    selection, confirmation = (
        selection_prompts(default, tmp_path),
        prompts_of(split.fitness, split.heldout_path),
    )
    assert len(selection) == 16 * 12 and len(confirmation) == 8 * 12 and not selection & confirmation
    assert split.fitness.verifiable["first_heldout_topic"] == 16

    with pytest.raises(ValueError, match="shares 1 prompt"):
        check_disjoint({"a", "b"}, {"b", "c"})
    reused = load_config(
        preset="tiny", overrides={"confirm": {"heldout_path": str(tmp_path / "data" / "heldout.jsonl")}}
    )
    with pytest.raises(ValueError, match="shares 6 prompt"):  # the selection pairs cannot confirm
        confirmation_split(reused, tmp_path)
    everything = load_config(overrides={"fitness": {"verifiable": {"n_heldout_topics": 40}}})
    with pytest.raises(ValueError, match="at most 0 are left"):
        confirmation_split(everything, tmp_path)
