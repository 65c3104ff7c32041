"""``python -m evo.launch --plan``: the per-candidate plan and cost of a recipe without training, and exit 2 with the
fix for a plan that cannot fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evo.config import load_config
from evo.plan import PlanDoesNotFit, check, plan

RECIPES = Path(__file__).resolve().parents[2] / "runs" / "recipes"


def _plan(*args: str) -> subprocess.CompletedProcess:
    # no RAY_ADDRESS: an earlier test's ray.init() leaves one in this process's environment, and the plan would
    # then be checked against that (stopped, GPU-less) cluster
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["WANDB_MODE"] = (
        "offline"  # as in CI, where transformers then prints a line on import: not onto stdout
    )
    return subprocess.run(
        [sys.executable, "-m", "evo.launch", *args, "--plan"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_zephyr_plan_trains_each_candidate_on_8_gpus_with_zero3_and_answers_with_vllm():
    proc = _plan("--config", str(RECIPES / "zephyr-7b-gemma.yaml"), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    search = json.loads(proc.stdout)
    candidate = search["candidate"]
    assert (candidate["workers"], candidate["gpus_per_worker"], candidate["gpus"]) == (8, 1, 8)
    assert (candidate["deepspeed"], candidate["zero_stage"]) == ("zero3", 3)
    assert (candidate["generation_backend"], candidate["dtype"]) == ("vllm", "bfloat16")
    assert (search["model_params_b"], search["model_params_from"]) == (
        8.5,
        "recipe",
    )  # declared: works offline
    assert candidate["optimizer_steps"] == 2 * 53  # 2 epochs of ceil(6,750 pairs / 128)
    assert (candidate["eval_generations"], candidate["judge_calls"]) == (160, 160)  # MT-Bench: 80 x 2 turns
    assert search["candidates"] == 3 + 20  # 3 baselines + 20 generations x 1
    assert search["gpu_hours"] > 0 and search["judge_usd"] > 0 and search["cpu_hours"] is None


def test_a_7b_full_fine_tune_in_one_process_without_zero_exits_2_naming_the_fix(tmp_path):
    recipe = yaml.safe_load((RECIPES / "spin-zephyr-7b.yaml").read_text())
    recipe["training"]["deepspeed"] = None
    recipe["resources"].update(workers_per_candidate=1, gpus_per_worker=1)
    path = tmp_path / "one-gpu-7b.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = _plan("--config", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stdout.split())
    assert "this plan cannot run" in message and "7.2B parameters" in message
    assert "training.deepspeed: zero3" in message and "resources.workers_per_candidate" in message


def test_deepspeed_without_gpus_and_a_cluster_too_small_do_not_fit():
    with pytest.raises(PlanDoesNotFit, match="needs GPUs: set resources.gpus_per_worker"):
        plan(load_config(preset="tiny", overrides={"training": {"deepspeed": "zero3"}}))
    zephyr = plan(load_config(RECIPES / "zephyr-7b-gemma.yaml"))
    check(zephyr, available_gpus=8)
    with pytest.raises(PlanDoesNotFit, match="asks for 8 GPUs .* cluster at RAY_ADDRESS has 4"):
        check(zephyr, available_gpus=4)


def test_tiny_plan_reads_the_model_size_from_its_config_and_counts_cpu_hours():
    search = plan(load_config(preset="tiny", overrides={"resources": {"workers_per_candidate": 2}}))
    assert search.model_params_from == "config" and 0 < search.model_params_b < 0.1
    assert (search.candidate.workers, search.candidate.gpus, search.candidate.optimizer_steps) == (2, 0, 6)
    assert search.cpu_hours is not None and search.gpu_hours is None
    assert search.candidate.eval_generations == 0  # the proxy fitness generates nothing
    check(search, available_gpus=None)
