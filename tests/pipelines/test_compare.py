"""The comparison script end to end on the tiny model (the real measurement uses SmolLM2; this pins the
plumbing: training through the baselines, verifiable scoring, paired deltas, resumption)."""

import json

import pytest

from evaluators.fitness import Fitness, paired_delta
from trainer.pipelines import compare

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

FAST_TRAIN = ["--max-steps", "1", "--batch-size", "4", "--max-length", "96"]


def test_compare_scores_every_method_with_paired_deltas(tmp_path, verifiable_pairs_file, monkeypatch):
    out = tmp_path / "compare"
    argv = [
        "--output-dir",
        str(out),
        "--model",
        "tiny",
        "--methods",
        "dpo",
        "--pairs",
        str(verifiable_pairs_file),
        "--method-options",
        json.dumps({"max_new_tokens": 8}),
        "--n-heldout-topics",
        "1",
        "--max-new-tokens",
        "8",
        *FAST_TRAIN,
    ]
    assert compare.main(argv) == 0
    report = json.loads((out / "compare.json").read_text())
    results = {r["method"]: r for r in report["results"]}
    assert list(results) == ["base", "dpo"]
    fitness = {m: Fitness.from_json(json.loads((out / m / "fitness.json").read_text())) for m in results}
    for method, row in results.items():
        assert row["n"] == fitness[method].n > 0 and row["score"] == fitness[method].score
        assert row["delta_vs_dpo"] == paired_delta(fitness[method], fitness["dpo"]).delta
        assert row["delta_vs_base_stderr"] == paired_delta(fitness[method], fitness["base"]).stderr
    assert results["dpo"]["delta_vs_dpo"] == 0.0
    assert (
        results["dpo"]["checkpoint"] == str(out / "dpo" / "model") and results["base"]["checkpoint"] == "tiny"
    )
    assert report["method_options"]["iterations"] == 1 and report["method_options"]["max_new_tokens"] == 8
    assert report["training"]["max_steps"] == 1 and report["training"]["model"] == "tiny"

    monkeypatch.setattr(
        compare, "evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-scored"))
    )
    assert compare.main(argv) == 0  # everything is kept: nothing is trained or scored again
