"""One training configuration: every entry point trains a loss with the same settings, and every command line's
training flags are ``trainer.config.TrainingConfig``'s fields with its defaults.

The capture wraps ``PreferenceConfig.from_training`` (the one translation of a ``TrainingConfig`` into TRL's
arguments, which ``run_training`` calls before it loads anything): it records what each entry point would train
with and stops the run there, so nothing is trained."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

import pytest
import torch
import yaml

from evaluators import separation
from evaluators.fitness import Fitness
from evo.archive import Archive
from evo.config import load_config
from evo.job import CandidateJob, run_job
from evo.retrain import main as retrain_main
from trainer import train as train_cli
from trainer.arguments import add_arguments, flag, from_arguments
from trainer.config import LAUNCH_FIELDS, TrainingConfig, TrainRun
from trainer.hardware import default_device, resolve_dtype
from trainer.pipelines import compare, granular, spa, spin
from trainer.pipelines.baseline_names import baseline_loss
from trainer.pipelines.baselines import run_baseline
from trainer.trainer import PreferenceConfig

PATH_ARGUMENTS = ("output_dir", "logging_dir", "run_name", "ref_cache_dir")  # where, not how
# What a tool deliberately trains differently, each set by a documented dataclasses.replace in that tool.
SEPARATION_DIFFERS_IN = {"learning_rate", "num_train_epochs"}  # evaluators.separation.SEPARATION_TRAINING


class Captured(Exception):
    """Raised in place of training, once the trainer's arguments are recorded."""


@dataclasses.dataclass
class Capture:
    training: TrainingConfig
    args: PreferenceConfig

    def settings(self) -> dict:
        """What decides how the model is trained: TRL's arguments (without paths) and the models."""
        settings = {k: v for k, v in self.args.to_dict().items() if k not in PATH_ARGUMENTS}
        return settings | {"model": self.training.model, "ref_model": self.training.ref_model}


@pytest.fixture
def capture(monkeypatch) -> list[Capture]:
    captured: list[Capture] = []
    translate = PreferenceConfig.from_training.__func__

    def recording(
        cls, training: TrainingConfig, run: TrainRun, deepspeed: str | None = None
    ) -> PreferenceConfig:
        captured.append(Capture(training, translate(cls, training, run, deepspeed)))
        raise Captured("arguments recorded; not training")

    monkeypatch.setattr(PreferenceConfig, "from_training", classmethod(recording))
    return captured


def _one(captured: list[Capture]) -> Capture:
    assert len(captured) == 1, f"expected one training run to start, saw {len(captured)}"
    return captured.pop()


def _search_job(tmp_path: Path, pairs: Path) -> None:
    config = load_config()  # the embedded default search
    job = CandidateJob(
        candidate_id=0,
        name="dpo",
        work_dir=str(tmp_path / "job"),
        train_path=str(pairs),
        heldout_path=None,
        training=config.training,
        fitness=config.fitness,
        loss=baseline_loss("dpo"),
        ref_cache_dir=str(tmp_path / "refcache"),
    )
    result = run_job(job)
    assert result.status == "failed" and "Captured" in result.reason  # stopped at the capture, as planned


def _retrain(tmp_path: Path, pairs: Path) -> None:
    run_dir = tmp_path / "run"
    archive = Archive(run_dir / "archive.sqlite")
    dpo = archive.add(
        0, "baseline", "done", name="dpo", loss="sigmoid", code="", fitness=0.5, stderr=0.1, n=4
    )
    archive.close()
    recipe = tmp_path / "retrain.yaml"  # the default search's training, the pairs from a file
    recipe.write_text(yaml.safe_dump({"data": {"source": "file", "train_path": str(pairs)}}))
    assert retrain_main([str(run_dir), "--candidate", str(dpo), "--recipe", str(recipe)]) == 1


def _dpo_baseline(tmp_path: Path, pairs: Path) -> None:
    with pytest.raises(Captured):
        run_baseline("dpo", load_config().training, str(pairs), str(tmp_path / "dpo"))


def _spa_seed_step(tmp_path: Path, pairs: Path) -> None:
    with pytest.raises(Captured):  # the pairs' prompts double as SPA's unlabelled prompts
        spa.main(["--seed-data", str(pairs), "--prompts", str(pairs), "--output-dir", str(tmp_path / "spa")])


def _train_cli(tmp_path: Path, pairs: Path) -> None:
    with pytest.raises(Captured):
        train_cli.main(["--data", str(pairs), "--output-dir", str(tmp_path / "cli")])


def _compare(tmp_path: Path, pairs: Path, monkeypatch) -> None:
    monkeypatch.setattr(compare, "evaluate", lambda model, spec: Fitness(0.5, 0.1, 4, {"per_item": {}}))
    with pytest.raises(Captured):
        compare.main(["--output-dir", str(tmp_path / "compare"), "--methods", "dpo", "--pairs", str(pairs)])


def _separation(tmp_path: Path, pairs: Path, monkeypatch) -> None:
    built = argparse.Namespace(train_path=pairs)
    monkeypatch.setattr(separation, "build_pairs", lambda config: built)
    monkeypatch.setattr(separation, "evaluate", lambda model, spec: Fitness(0.5, 0.1, 4, {"per_item": {}}))
    with pytest.raises(Captured):
        separation.main(["--output", str(tmp_path / "separation.json"), "--work-dir", str(tmp_path / "sep")])


def test_every_entry_point_trains_dpo_with_the_same_settings(tmp_path, preference_file, capture, monkeypatch):
    runs = {
        "search job (dpo baseline)": lambda: _search_job(tmp_path, preference_file),
        "evo.retrain": lambda: _retrain(tmp_path, preference_file),
        "pipeline dpo baseline": lambda: _dpo_baseline(tmp_path, preference_file),
        "spa seed DPO step": lambda: _spa_seed_step(tmp_path, preference_file),
        "python -m trainer.train": lambda: _train_cli(tmp_path, preference_file),
        "trainer.pipelines.compare": lambda: _compare(tmp_path, preference_file, monkeypatch),
        "evaluators.separation": lambda: _separation(tmp_path, preference_file, monkeypatch),
    }
    settings = {}
    for name, run in runs.items():
        run()
        settings[name] = _one(capture).settings()
    reference = settings.pop("search job (dpo baseline)")
    assert reference["loss"] == "sigmoid" and reference["model"] == "smollm2-135m-instruct"
    differing = {
        name: {
            k: (reference.get(k), theirs.get(k))
            for k in reference.keys() | theirs.keys()
            if reference.get(k) != theirs.get(k)
        }
        for name, theirs in settings.items()
    }
    assert set(differing.pop("evaluators.separation")) == SEPARATION_DIFFERS_IN
    assert differing == {name: {} for name in differing}


def test_a_method_loss_trains_with_the_default_settings_too(
    tmp_path, preference_file, granular_file, capture
):
    """The granular pipeline's default training is ``trainer.train --loss granular_tdpo``'s."""
    with pytest.raises(Captured):
        granular.main(["--data", str(granular_file), "--output-dir", str(tmp_path / "granular")])
    pipeline = _one(capture).settings()
    with pytest.raises(Captured):
        train_cli.main(
            ["--data", str(granular_file), "--output-dir", str(tmp_path / "cli"), "--loss", "granular_tdpo"]
        )
    assert pipeline == _one(capture).settings()


# ---- the command lines ------------------------------------------------------------------------------------------


def _parsed_training(monkeypatch, module, runner: str, argv: list[str]) -> TrainingConfig:
    """The TrainingConfig a pipeline command builds from ``argv`` (its run function replaced by a recorder)."""
    seen = []

    def record(config):
        seen.append(config)
        return ["checkpoint"]

    monkeypatch.setattr(module, runner, record)
    module.main(argv)
    (config,) = seen
    return config.training


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "main",
    [train_cli.main, spin.main, spa.main, granular.main, compare.main, separation.main],
    ids=["train", "spin", "spa", "granular", "compare", "separation"],
)
def test_every_training_field_has_a_flag(main, capsys):
    text = _help(main, capsys)
    for field in dataclasses.fields(TrainingConfig):
        if field.name not in LAUNCH_FIELDS:
            assert f"{flag(field.name)} " in text or f"{flag(field.name)}," in text, field.name


def test_command_line_defaults_are_the_configs(tmp_path, monkeypatch, preference_file, granular_file):
    defaults = TrainingConfig()
    sft_file = tmp_path / "sft.jsonl"
    sft_file.write_text(json.dumps({"prompt": "Say hi.", "completion": "hi"}) + "\n")
    assert train_cli.parse_args(["--data", "d", "--output-dir", "o"]) == (defaults, TrainRun("d", "o"))
    spin_training = _parsed_training(
        monkeypatch, spin, "run_spin", ["--sft-data", str(sft_file), "--output-dir", str(tmp_path / "s")]
    )
    assert spin_training == dataclasses.replace(defaults, loss="spin")
    spa_argv = ["--seed-data", str(preference_file), "--prompts", str(preference_file), "--output-dir", "o"]
    assert _parsed_training(monkeypatch, spa, "run_spa", spa_argv) == dataclasses.replace(
        defaults, loss="spa"
    )
    granular_argv = ["--data", str(granular_file), "--output-dir", "o"]
    granular_training = _parsed_training(monkeypatch, granular, "run_granular", granular_argv)
    assert granular_training == dataclasses.replace(defaults, loss="granular_tdpo")
    assert separation.SEPARATION_TRAINING == dataclasses.replace(
        defaults, **{name: getattr(separation.SEPARATION_TRAINING, name) for name in SEPARATION_DIFFERS_IN}
    )


def _other_value(hint, default):
    """A value of type ``hint`` different from ``default``, and the command-line text that says it."""
    if typing.get_origin(hint) is typing.Literal:
        value = next(v for v in typing.get_args(hint) if v != default)
        return value, [value]
    if hint is bool:
        return not default, ["--no-" if default else "--"]
    members = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = members[0]
    value = {str: "other", int: 7, float: 0.25, dict: {"alpha": 0.5}}[kind]
    return value, [json.dumps(value) if kind is dict else str(value)]


def test_every_flag_reaches_its_field():
    hints = typing.get_type_hints(TrainingConfig)
    for field in dataclasses.fields(TrainingConfig):
        parser = argparse.ArgumentParser()
        add_arguments(parser, TrainingConfig())
        value, text = _other_value(hints[field.name], getattr(TrainingConfig(), field.name))
        argv = (
            [text[0] + field.name.replace("_", "-")]
            if hints[field.name] is bool
            else [flag(field.name), *text]
        )
        parsed = from_arguments(TrainingConfig(), parser.parse_args(argv))
        assert parsed == dataclasses.replace(TrainingConfig(), **{field.name: value}), field.name


def test_optional_flags_take_none_and_bad_values_are_refused(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainingConfig(max_prompt_length=256, ref_model="tiny"))
    parsed = from_arguments(
        TrainingConfig(), parser.parse_args(["--max-prompt-length", "none", "--ref-model", "null"])
    )
    assert (parsed.max_prompt_length, parsed.ref_model) == (None, None)
    for argv in (
        ["--loss-params", "[1]"],
        ["--loss-params", "{bad"],
        ["--dtype", "float16"],
        ["--beta", "x"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert "error" in capsys.readouterr().err


def test_training_config_checks_and_derivations():
    with pytest.raises(ValueError, match="dtype must be one of"):
        TrainingConfig(dtype="float16")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epochs'\] in training"):
        load_config(overrides={"training": {"epochs": 3}})  # a recipe's typo fails loudly
    with pytest.raises(ValueError, match=r"unknown training key\(s\) \['epochs'\]"):
        TrainingConfig.from_dict({"epochs": 3})
    spa_training = TrainingConfig(loss="spa", loss_params={"alpha": 0.1})
    assert spa_training.with_loss("spa") is spa_training
    assert spa_training.with_loss("sigmoid") == TrainingConfig()  # parameters belong to their loss


def test_dtype_decides_bf16(tmp_path):
    run = TrainRun(data="d", output_dir=str(tmp_path))
    assert PreferenceConfig.from_training(TrainingConfig(dtype="float32"), run).bf16 is False
    assert PreferenceConfig.from_training(TrainingConfig(dtype="bfloat16"), run).bf16 is True
    auto_is_bf16 = (
        resolve_dtype("auto", default_device()) == torch.bfloat16
    )  # rules: tests/trainer/test_hardware.py
    assert PreferenceConfig.from_training(TrainingConfig(dtype="auto"), run).bf16 is auto_is_bf16
