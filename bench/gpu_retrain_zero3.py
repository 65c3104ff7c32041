"""DeepSpeed ZeRO-3 smoke run of ``python -m evo.retrain`` on the GPUs of this machine (one is enough).

    python bench/gpu_retrain_zero3.py [--model smollm2-135m-instruct] [--steps 20] [--out FILE]

Builds a small finished run (the DPO baseline and one discovered loss, on the template pairs of the tiny preset),
retrains the rank-1 candidate through the real command line with ``training.deepspeed: zero3`` on one Ray Train
worker per GPU (``evo.workers``: the search's path, DeepSpeed inside the workers), checks the archive's ``retrains`` row, and writes timings and the row to
``bench/results/gpu_retrain_zero3.json``. The default model ships with the project (no download)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from evo.archive import Archive
from evo.retrain_store import RetrainStore
from trainer.losses import get_loss_spec

DISCOVERED = """def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * logits) + 0.1 * torch.relu(1 - beta * logits)
"""


def finished_run(run_dir: Path) -> None:
    archive = Archive(run_dir / "archive.sqlite")
    archive.add(
        0,
        "baseline",
        "done",
        name="dpo",
        loss="sigmoid",
        code=get_loss_spec("sigmoid").source,
        fitness=0.5,
        stderr=0.1,
        n=6,
    )
    archive.add(1, "llm", "done", name="mixed_logistic_hinge", code=DISCOVERED, fitness=0.9, stderr=0.1, n=6)
    archive.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_retrain_zero3.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "no CUDA device: this smoke run trains with DeepSpeed ZeRO-3 on GPUs; run it on a GPU machine",
            file=sys.stderr,
        )
        return 2
    gpus = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        finished_run(run_dir)
        recipe = Path(scratch) / "zero3-smoke.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "preset": "tiny",
                    "training": {
                        "model": args.model,
                        "max_steps": args.steps,
                        "batch_size": 4,
                        "learning_rate": 1e-5,
                        "max_length": 256,
                        "deepspeed": "zero3",
                    },
                    "data": {"source": "synthetic", "synthetic_pairs": 4 * args.steps},
                    "fitness": {"kind": "proxy"},
                    "resources": {"num_cpus": gpus, "workers_per_candidate": gpus, "gpus_per_worker": 1},
                }
            )
        )
        command = [sys.executable, "-m", "evo.retrain", str(run_dir), "--rank", "1", "--recipe", str(recipe)]
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - started
        store = RetrainStore(run_dir / "archive.sqlite")
        records = store.all()
        store.close()
        log_file = run_dir / "retrains" / "2-zero3-smoke" / "retrain.log"
        log_tail = log_file.read_text(errors="replace")[-4000:] if log_file.exists() else ""
    if proc.returncode != 0 or not records:
        print(proc.stdout[-3000:], proc.stderr[-3000:], log_tail, sep="\n", file=sys.stderr)
        print(f"evo.retrain failed with exit code {proc.returncode}", file=sys.stderr)
        return 1
    record = records[0]
    ok = (
        record.status == "done"
        and record.launch["deepspeed"] == "zero3"
        and record.train["world_size"] == gpus
    )
    results = {
        "device": torch.cuda.get_device_name(0),
        "gpus": gpus,
        "model": args.model,
        "steps": args.steps,
        "wall_s": wall,
        "ok": ok,
        "retrain": {
            k: getattr(record, k)
            for k in ("status", "reason", "fitness", "stderr", "n", "launch", "train", "timings")
        },
        "log_tail": log_tail[-1500:],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(
        f"ZeRO-3 retrain on {results['gpus']} x {results['device']}: {record.status}, {record.train.get('steps')} "
        f"steps, train {record.timings.get('train_s', 0):.1f}s, fitness {record.fitness}; wrote {args.out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
