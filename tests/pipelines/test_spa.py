"""SPA on the tiny model: seed DPO, two self-annotated iterations, each step's artefacts, and resumption."""

import json

import pytest

from tests.builders import read_jsonl
from tests.pipelines.helpers import FAST_SAMPLING, FAST_TRAIN
from trainer.logprobs import completion_logps
from trainer.models import load_policy
from trainer.pipelines import spa

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def test_seed_then_two_iterations_and_a_rerun_redoes_nothing(tmp_path, seed_file, prompts_file, monkeypatch):
    out = tmp_path / "spa"
    argv = (
        [
            "--model",
            "tiny",
            "--seed-data",
            str(seed_file),
            "--prompts",
            str(prompts_file),
            "--iterations",
            "2",
            "--output-dir",
            str(out),
            "--learning-rate",
            "1e-3",
        ]
        + FAST_SAMPLING
        + FAST_TRAIN
    )
    assert spa.main(argv) == 0
    state = json.loads((out / "state.json").read_text())
    assert list(state["steps"]) == ["seed/train"] + [
        f"iter_{t}/{s}" for t in (1, 2) for s in ("generate", "judge", "train")
    ]
    assert state["steps"]["iter_1/generate"]["policy"] == str(out / "seed" / "model")
    assert state["steps"]["iter_2/train"]["reference"] == str(out / "iter_1" / "model")
    assert json.loads((out / "seed" / "model" / "metrics.json").read_text())["metrics"]["loss"] == "sigmoid"

    prompts = [row["prompt"] for row in read_jsonl(prompts_file)]
    seen_prompts = []
    for t in (1, 2):
        folder = out / f"iter_{t}"
        samples = read_jsonl(folder / "samples.jsonl")
        assert [len(row["responses"]) for row in samples] == [2, 2]  # 4 prompts split over 2 iterations
        seen_prompts += [row["prompt"][-1]["content"] for row in samples]
        judged = read_jsonl(folder / "judged.jsonl")
        assert [row["responses"] for row in judged] == [row["responses"] for row in samples]
        pairs = read_jsonl(folder / "pairs.jsonl")
        assert pairs and set(pairs[0]) == {"prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"}
        for pair in pairs:
            row = next(r for r in judged if r["prompt"] == pair["prompt"])
            assert (
                pair["chosen_reward"] == max(row["rewards"]) > pair["rejected_reward"] == min(row["rewards"])
            )
            assert pair["chosen"][0]["content"] == row["responses"][row["rewards"].index(max(row["rewards"]))]
        metrics = json.loads((folder / "model" / "metrics.json").read_text())
        assert metrics["metrics"]["loss"] == "spa" and metrics["steps"] == 1
    assert sorted(seen_prompts) == sorted(prompts)  # disjoint chunks covering every prompt

    # implicit reward: log pi_current(y|x) - log pi_init(y|x), pi_current = the iteration's starting policy
    row = read_jsonl(out / "iter_2" / "judged.jsonl")[0]
    current, tokenizer = load_policy(str(out / "iter_1" / "model"))
    initial, _ = load_policy("tiny")
    response = row["responses"][0]
    expected = (
        completion_logps(current, tokenizer, [row["prompt"]], [response], max_length=96)[0]
        - completion_logps(initial, tokenizer, [row["prompt"]], [response], max_length=96)[0]
    )
    assert row["rewards"][0] == pytest.approx(expected, abs=1e-4) and expected != 0.0

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    for name in ("sample_responses", "train", "implicit_rewards"):
        monkeypatch.setattr(spa, name, must_not_run)
    assert spa.main(argv) == 0


def test_chunks_are_disjoint_and_cover_everything():
    items = list(range(7))
    chunks = [spa.chunk(items, 3, i) for i in range(3)]
    assert chunks == [[0, 1], [2, 3, 4], [5, 6]]


def test_ties_carry_no_preference():
    judged = [
        {"prompt": "p", "responses": ["a", "b", "c"], "rewards": [0.1, 0.5, -0.2]},
        {"prompt": "q", "responses": ["a", "b"], "rewards": [0.3, 0.3]},
        {"prompt": "r", "responses": ["same", "same"], "rewards": [0.1, 0.2]},
    ]
    [pair] = spa.best_worst_pairs(judged)
    assert pair["chosen"][0]["content"] == "b" and pair["rejected"][0]["content"] == "c"


def test_one_sample_per_prompt_is_refused(tmp_path, seed_file, prompts_file):
    with pytest.raises(ValueError, match="at least 2 samples"):
        spa.main(
            [
                "--model",
                "tiny",
                "--seed-data",
                str(seed_file),
                "--prompts",
                str(prompts_file),
                "--output-dir",
                str(tmp_path),
                "--num-samples",
                "1",
            ]
        )
