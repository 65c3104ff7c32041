"""The divergence guard under DeepSpeed ZeRO-2, for real (gloo, one CPU process): the gradients live in the engine's
partitions, so every ``p.grad`` is None while the gradient is infinite; the guard reads the engine's global norm.

The training runs in a child process: DeepSpeed's process group and accelerate's state are process-wide."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import preference_rows, write_jsonl

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import dataclasses, json, os, socket, sys
import torch
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=str(port), ACCELERATE_USE_DEEPSPEED="true")
from trainer.config import TrainingConfig, TrainRun
from trainer.data import load_preference_dataset
from trainer.models import load_policy
from trainer.trainer import CandidateDiverged, PreferenceConfig, PreferenceTrainer

data, out, loss_name = sys.argv[1:4]
zero2 = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
         "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "zero_allow_untested_optimizer": True,
         "bf16": {"enabled": False}, "fp16": {"enabled": False}}
training = TrainingConfig(model="tiny", learning_rate=1e-3, batch_size=4, max_steps=2, dtype="float32")  # as zero2
run = TrainRun(data=data, output_dir=out, save_model=False)
args = dataclasses.replace(PreferenceConfig.from_training(training, run), deepspeed=zero2, use_cpu=False)


def sqrt_at_zero(pc, pr, rc, rr, beta):  # value: DPO's; gradient: infinite (d sqrt(u) at u = 0)
    return torch.sqrt(pc - pc.detach()) - torch.nn.functional.logsigmoid(beta * (pc - pr - rc + rr))


def dpo(pc, pr, rc, rr, beta):
    return -torch.nn.functional.logsigmoid(beta * (pc - pr - rc + rr))


_, dataset = load_preference_dataset(data)
model, tokenizer = load_policy("tiny")
trainer = PreferenceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            loss={"sqrt_at_zero": sqrt_at_zero, "dpo": dpo}[loss_name])
report = {"deepspeed": trainer.is_deepspeed_enabled}
try:
    trainer.train()
    report["outcome"] = "trained"
    report["steps"] = trainer.state.global_step
except CandidateDiverged as err:
    report["outcome"] = str(err)
report["grads_present"] = sum(p.grad is not None for p in trainer.model.parameters())
report["losses"] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
print("REPORT " + json.dumps(report))
"""


def _train_under_zero2(tmp_path: Path, loss: str) -> dict:
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(tmp_path / "out"), loss],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("REPORT "))


def test_an_infinite_gradient_under_zero2_stops_the_candidate(tmp_path):
    pytest.importorskip("deepspeed")
    report = _train_under_zero2(tmp_path, "sqrt_at_zero")
    assert report["deepspeed"] is True
    assert report["grads_present"] == 0  # ZeRO keeps the gradients in its partitions: p.grad tells nothing
    assert report["outcome"] == "diverged at step 1: the global gradient norm is inf"
    assert report["losses"] == []  # stopped inside the first step, the loss itself finite


def test_a_finite_loss_trains_under_zero2(tmp_path):
    pytest.importorskip("deepspeed")
    report = _train_under_zero2(tmp_path, "dpo")
    assert report["outcome"] == "trained" and report["steps"] == 2
    assert len(report["losses"]) == 2 and all(v == v for v in report["losses"])
