"""Every registry loss is a baseline, and the leaderboard names the baseline its paired deltas compare with (DPO
by default, ``fitness.reference_baseline`` otherwise)."""

from __future__ import annotations

import json

import pytest

from evo.archive import Archive
from evo.config import load_config, save_config
from evo.leaderboard import main as leaderboard_main
from trainer.losses import loss_names
from trainer.pipelines.baseline_names import baseline_loss


def test_every_registry_loss_is_a_baseline_and_unknown_names_are_clear_errors(recipe):
    config = load_config(recipe(preset="tiny", baselines=["sigmoid", "simpo"]))
    assert config.baselines == ("sigmoid", "simpo") and config.fitness.reference_baseline == "dpo"
    assert [baseline_loss(name) for name in loss_names()] == [
        None if name in ("spin", "spa") else name for name in loss_names()
    ]
    assert baseline_loss("0.5*sigmoid+sft") == "0.5*sigmoid+sft" and baseline_loss("dpo") == "sigmoid"
    with pytest.raises(ValueError, match=r"unknown baseline 'simpoo'.*registry losses: .*simpo"):
        load_config(recipe(baselines=["dpo", "simpoo"]))
    with pytest.raises(ValueError, match="reference baseline 'dpo' is not among the baselines"):
        load_config(recipe(baselines=["simpo", "orpo"]))
    load_config(recipe(baselines=["simpo", "orpo"], fitness={"reference_baseline": "orpo"}))


def _run(tmp_path, reference: str | None):
    fitness = {"kind": "proxy"} | ({"reference_baseline": reference} if reference else {})
    config = load_config(preset="tiny", overrides={"baselines": ["sigmoid", "simpo"], "fitness": fitness})
    save_config(config, tmp_path / "config.yaml")
    archive = Archive(tmp_path / "archive.sqlite")

    def done(generation: int, name: str, per_item: list[int], loss: str | None = None) -> None:
        details = {"per_item": {str(i): v for i, v in enumerate(per_item)}}
        archive.add(
            generation,
            "baseline" if loss else "llm",
            "done",
            name=name,
            loss=loss,
            code="",
            fitness=sum(per_item) / len(per_item),
            stderr=0.1,
            n=len(per_item),
            metrics={"fitness_details": details},
        )

    done(0, "sigmoid", [1, 0, 1, 0], loss="sigmoid")
    done(0, "simpo", [1, 1, 1, 0], loss="simpo")
    done(1, "found", [1, 1, 1, 1])
    archive.close()
    return tmp_path


@pytest.mark.parametrize(("reference", "shown", "delta"), [(None, "dpo", 0.5), ("simpo", "simpo", 0.25)])
def test_the_leaderboard_names_its_reference_baseline(tmp_path, capsys, monkeypatch, reference, shown, delta):
    monkeypatch.setenv("COLUMNS", "200")  # the whole table on one line per row (the header is checked)
    run_dir = _run(tmp_path, reference)
    assert leaderboard_main([str(run_dir), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["reference"] == shown
    found = next(row for row in payload["rows"] if row["name"] == "found")
    assert found["delta_vs_dpo"] == pytest.approx(delta)  # dpo is the sigmoid baseline: 1.0 - 0.5
    assert leaderboard_main([str(run_dir)]) == 0
    assert f"delta vs {shown}" in capsys.readouterr().out
    assert leaderboard_main([str(run_dir), "--json", "--reference", "sigmoid"]) == 0
    assert json.loads(capsys.readouterr().out)["reference"] == "sigmoid"
