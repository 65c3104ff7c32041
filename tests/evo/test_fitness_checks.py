"""A fitness that cannot be computed is never recorded silently: a NaN score fails the candidate with the
evaluator's reason, and a fitness that needs what this machine lacks stops the search before any training."""

import pytest

from evo.config import FitnessConfig, load_config
from evo.job import CandidateJob, run_job
from evo.synthetic import write_synthetic_pairs
from tests.builders import SHARED_DATA, launch
from tests.evo.fake_llm import FakeLLM

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


@pytest.fixture
def mt_bench_data():
    if not (SHARED_DATA / "mt_bench" / "question.jsonl").exists():
        pytest.skip(f"benchmark data not found under {SHARED_DATA}")
    return SHARED_DATA / "mt_bench"


def test_a_nan_fitness_fails_the_candidate_with_the_reason(tmp_path, mt_bench_data):
    train, _ = write_synthetic_pairs(tmp_path / "data", 8)
    with FakeLLM(
        [], default={"reply": "An answer, but no rating."}
    ) as judge:  # every turn unrated: mean of none
        fitness = FitnessConfig(
            kind="mt_bench",
            mt_bench={
                "judge": {"model": "fake", "base_url": judge.base_url, "max_retries": 0},
                "question_file": str(mt_bench_data / "question.jsonl"),
                "judge_prompts": str(mt_bench_data / "judge_prompts.jsonl"),
                "reference_answers": str(mt_bench_data / "reference_answer" / "gpt-4.jsonl"),
                "question_ids": [81],
                "max_new_tokens": 4,
            },
        )
        job = CandidateJob(
            candidate_id=1,
            name="dpo",
            work_dir=str(tmp_path / "work"),
            train_path=str(train),
            heldout_path=None,
            training=load_config(preset="tiny").training,
            fitness=fitness,
            loss="sigmoid",
        )
        result = run_job(job)
    assert len(judge.requests) == 2  # both turns were judged
    assert result.status == "failed" and result.fitness is None and result.error_class == "NonFiniteFitness"
    assert result.reason.startswith("NonFiniteFitness: the mt_bench evaluator returned score nan +- nan")


def test_alpaca_eval_lc_without_df_gamed_stops_the_search_before_any_training(tmp_path, recipe):
    config = recipe(
        preset="tiny",
        proposers={"llm": False},
        fitness={
            "kind": "alpaca_eval_lc",
            "alpaca_eval": {"judge": {"model": "judge", "base_url": "http://127.0.0.1:9/v1"}},
        },
    )
    run_dir = tmp_path / "run"
    hub = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "COLUMNS": "400"}
    proc = launch(["--config", str(config), "--run-dir", str(run_dir)], env=hub)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (
        "cannot run this search here: AlpacaEval's length-controlled win rate needs df_gamed.csv"
        in proc.stdout
    )
    assert "--lc-gamed-file PATH (in a recipe: fitness.alpaca_eval.lc_gamed_file)" in proc.stdout
    assert not (run_dir / "archive.sqlite").exists() and not (run_dir / "candidates").exists()
