"""SPIN on the tiny model: two iterations, each step's artefacts, and resumption after an interruption."""

import json

import pytest
from safetensors.torch import load_file

from tests.builders import bot, read_jsonl, user, write_jsonl
from tests.pipelines.helpers import FAST_SAMPLING, FAST_TRAIN
from trainer.data import DataFormatError, load_preference_dataset
from trainer.pipelines import spin
from trainer.pipelines.state import ConfigMismatchError

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def test_two_iterations_resume_after_an_interrupted_training(tmp_path, sft_file, monkeypatch):
    out = tmp_path / "spin"
    argv = ["--model", "tiny", "--sft-data", str(sft_file), "--iterations", "2", "--output-dir", str(out)]
    argv += FAST_SAMPLING + FAST_TRAIN
    real_train = spin.train

    def train_until_iteration_two(model, data, output_dir, *args, **kwargs):
        if "iter_2" in str(output_dir):
            (output_dir / "partial").mkdir(parents=True)  # a checkpoint cut off half-written
            raise KeyboardInterrupt
        return real_train(model, data, output_dir, *args, **kwargs)

    monkeypatch.setattr(spin, "train", train_until_iteration_two)
    with pytest.raises(KeyboardInterrupt):
        spin.main(argv)
    steps = json.loads((out / "state.json").read_text())["steps"]
    assert list(steps) == ["iter_1/generate", "iter_1/train", "iter_2/generate"]
    first_generation = (out / "iter_2" / "generated.jsonl").read_text()
    iteration_one_weights = (out / "iter_1" / "model" / "model.safetensors").stat().st_mtime_ns

    def no_sampling(*args, **kwargs):
        raise AssertionError("a finished generation step ran again")

    monkeypatch.setattr(spin, "train", real_train)
    monkeypatch.setattr(spin, "sample_responses", no_sampling)
    assert spin.main(argv) == 0
    assert (out / "iter_2" / "generated.jsonl").read_text() == first_generation
    assert (out / "iter_1" / "model" / "model.safetensors").stat().st_mtime_ns == iteration_one_weights
    assert not (out / "iter_2" / "model" / "partial").exists()

    state = json.loads((out / "state.json").read_text())
    assert list(state["steps"]) == ["iter_1/generate", "iter_1/train", "iter_2/generate", "iter_2/train"]
    assert state["steps"]["iter_1/train"]["opponent"] == "tiny"
    assert state["steps"]["iter_2/generate"]["opponent"] == str(out / "iter_1" / "model")
    assert state["steps"]["iter_2/train"]["opponent"] == str(out / "iter_1" / "model")
    sft = read_jsonl(sft_file)
    for t in (1, 2):
        generated = read_jsonl(out / f"iter_{t}" / "generated.jsonl")
        assert len(generated) == 4 * 2 and {row["iteration"] for row in generated} == {t}
        for row in generated:
            assert set(row) == {"real", "generated", "iteration"}
            assert row["real"] in [s["messages"] for s in sft]  # the SFT answer is the real side
            assert row["generated"][:-1] == row["real"][:-1] and row["generated"][-1]["role"] == "assistant"
        model_dir = out / f"iter_{t}" / "model"
        assert load_file(model_dir / "model.safetensors") and (model_dir / "tokenizer.json").exists()
        metrics = json.loads((model_dir / "metrics.json").read_text())
        assert metrics["steps"] == 1 and metrics["metrics"]["loss"] == "spin"
    train_rows = read_jsonl(out / "iter_2" / "train.jsonl")
    assert sorted(r["iteration"] for r in train_rows) == [1] * 8 + [2] * 8  # this and the previous iteration
    assert read_jsonl(out / "iter_1" / "train.jsonl") == read_jsonl(out / "iter_1" / "generated.jsonl")
    metrics = json.loads((out / "iter_2" / "model" / "metrics.json").read_text())
    assert metrics["metrics"]["training"]["ref_model"] == str(
        out / "iter_1" / "model"
    )  # the opponent is the reference
    assert metrics["metrics"]["training"]["model"] == str(out / "iter_1" / "model")
    _, dataset = load_preference_dataset(out / "iter_2" / "train.jsonl")
    assert len(dataset) == 16

    with pytest.raises(ConfigMismatchError, match="loss"):
        spin.main(argv + ["--loss", "spin_hinge"])
    sft_file.write_text(sft_file.read_text().replace("calm", "quiet"))
    with pytest.raises(ConfigMismatchError, match="sft_data"):  # same path, other content
        spin.main(argv)


def test_sft_formats(tmp_path):
    rows = [
        {"messages": user("a?") + bot("A.")},
        {"prompt": "b?", "completion": "B."},
        {"prompt": user("c?"), "completion": bot("C.")},
    ]
    examples = spin.load_sft(write_jsonl(tmp_path / "sft.jsonl", rows))
    assert [(e.prompt, e.answer) for e in examples] == [
        (user("a?"), "A."),
        (user("b?"), "B."),
        (user("c?"), "C."),
    ]
    pairs = spin.spin_pairs(examples[:1], [["x", "y"]], iteration=3)
    assert pairs[1] == {"real": user("a?") + bot("A."), "generated": user("a?") + bot("y"), "iteration": 3}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"messages": user("a?")}, "messages"),
        ({"prompt": "a?", "completion": ""}, "completion"),
        ({"text": "a"}, "<row>"),
    ],
)
def test_bad_sft_rows_are_reported(tmp_path, row, field):
    with pytest.raises(DataFormatError, match=f"row 0: field '{field}'"):
        spin.load_sft(write_jsonl(tmp_path / "sft.jsonl", [row]))
