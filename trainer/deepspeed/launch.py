"""Multi-process training of one ``TrainingConfig``: ``accelerate launch`` with DeepSpeed ZeRO (or plain DDP).

    plan = launch_plan(training.deepspeed, gpus=torch.cuda.device_count())
    result = train_distributed(training, run, work_dir, num_processes=plan.num_processes, deepspeed=plan.deepspeed)

``launch_plan`` decides: DeepSpeed on all visible GPUs when a config is named, DDP on several GPUs without one,
in-process training on one GPU without DeepSpeed or on a CPU (a named config is then ignored, with a note). Inside
a Ray task the visible GPUs are the ones Ray assigned to it.

The parent writes ``job.json`` and ``accelerate.yaml`` into ``work_dir`` and runs

    python -m accelerate.commands.launch --config_file accelerate.yaml -m trainer.deepspeed.launch job.json

Every rank builds the loss (``training.loss`` from the registry, or a discovered loss rebuilt from its ``graph``, the
JSON the sandbox traced: no candidate source is in the job file) and calls ``run_training``; rank 0 writes
``result.json`` (or ``diverged.json`` when the loss or gradient went non-finite, re-raised here as
``CandidateDiverged``; or ``turned.json`` when the online direction check stopped the loss, re-raised as
``CandidateTurned``). The launcher's output goes to ``work_dir/train.log``; it
gets a parent-death signal, so killing the caller (a Ray task past its timeout) stops the ranks too.

Launched runs do not use the shared reference cache: the reference model runs alongside the policy, sharded like
it (the cache's reference pass needs the whole model on one device)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from trainer.config import TrainingConfig, TrainRun
from trainer.deepspeed import accelerate_config
from trainer.losses.discovered import CandidateTurned, candidate_loss
from trainer.processes import die_with_parent, free_port
from trainer.train import TrainResult, run_training
from trainer.trainer import CandidateDiverged

RESULT_FILE = "result.json"
DIVERGED_FILE = "diverged.json"
TURNED_FILE = "turned.json"
LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class DistributedJob:
    training: TrainingConfig
    run: TrainRun
    name: str
    graph: str | None = None  # a discovered loss's traced graph (JSON); None: training.loss from the registry

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> DistributedJob:
        data = json.loads(text)
        return cls(
            training=TrainingConfig.from_dict(data["training"]),
            run=TrainRun(**data["run"]),
            name=data["name"],
            graph=data["graph"],
        )


@dataclass(frozen=True)
class LaunchPlan:
    backend: str  # "in_process" | "accelerate"
    num_processes: int = 1
    deepspeed: str | None = None  # config name or path (accelerate backend only)
    note: str | None = None  # why a requested DeepSpeed config is not used

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def launch_plan(deepspeed: str | None, gpus: int) -> LaunchPlan:
    """How to train on this machine: DeepSpeed on all GPUs when asked, DDP on several, else in this process."""
    if gpus == 0:
        note = (
            f"no CUDA device: training in this process without DeepSpeed ({deepspeed})" if deepspeed else None
        )
        return LaunchPlan("in_process", note=note)
    if deepspeed is not None:
        return LaunchPlan("accelerate", gpus, deepspeed)
    if gpus > 1:
        return LaunchPlan("accelerate", gpus)
    return LaunchPlan("in_process")


def launch_command(config_file: Path, job_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "-m",
        "trainer.deepspeed.launch",
        str(job_file),
    ]


def train_distributed(
    training: TrainingConfig,
    run: TrainRun,
    work_dir: Path,
    *,
    num_processes: int,
    deepspeed: str | None,
    graph: str | None = None,
    name: str | None = None,
) -> TrainResult:
    """Train on ``num_processes`` GPUs of this machine with the DeepSpeed config ``deepspeed`` (the launch plan's;
    None: DDP); raises ``RuntimeError`` with the log tail on failure."""
    work_dir.mkdir(parents=True, exist_ok=True)
    job = DistributedJob(training, dataclasses.replace(run, ref_cache_dir=None), name or training.loss, graph)
    job_file, config_file = work_dir / "job.json", work_dir / "accelerate.yaml"
    job_file.write_text(job.to_json())
    config_file.write_text(yaml.safe_dump(accelerate_config(num_processes, free_port(), deepspeed)))
    for stale in (RESULT_FILE, DIVERGED_FILE, TURNED_FILE):
        (work_dir / stale).unlink(missing_ok=True)
    log_path = work_dir / "train.log"
    with log_path.open("w") as log:
        returncode = subprocess.run(
            launch_command(config_file, job_file),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            preexec_fn=die_with_parent,  # torch's elastic agent then stops every rank
        ).returncode
    diverged = work_dir / DIVERGED_FILE
    if diverged.exists():
        raise CandidateDiverged(**json.loads(diverged.read_text()))
    turned = work_dir / TURNED_FILE
    if turned.exists():
        raise CandidateTurned(json.loads(turned.read_text())["reason"])
    result = work_dir / RESULT_FILE
    if returncode != 0 or not result.exists():
        tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        raise RuntimeError(f"accelerate launch exited with {returncode}; end of {log_path}:\n{tail}")
    return TrainResult(**json.loads(result.read_text()))


def _write_atomic(path: Path, text: str) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(text)
    scratch.replace(path)


def worker(job_file: Path) -> None:
    """One rank: build the loss, train, and (rank 0) write the result next to the job file."""
    job = DistributedJob.from_json(job_file.read_text())
    loss = candidate_loss(job.name, job.graph, job.training.direction_patience)
    rank_zero = int(os.environ.get("RANK", "0")) == 0
    try:
        result = run_training(job.training, job.run, loss=loss)
    except CandidateDiverged as err:
        if rank_zero:
            _write_atomic(
                job_file.parent / DIVERGED_FILE,
                json.dumps({"step": err.step, "what": err.what, "value": err.value}),
            )
        raise
    except CandidateTurned as err:
        if rank_zero:
            _write_atomic(job_file.parent / TURNED_FILE, json.dumps({"reason": err.reason}))
        raise
    if rank_zero:
        _write_atomic(job_file.parent / RESULT_FILE, json.dumps(asdict(result), default=str))


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
