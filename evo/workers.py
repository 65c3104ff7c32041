"""Where one loss trains: the one training path of the search's candidates and baselines and of ``evo.retrain``.

    outcome = train_on_workers(TrainTask(training, run, name, graph, evaluate=...), Placement.of(resources, training))

``Placement`` says how many workers train one candidate (``resources.workers_per_candidate``), the CPUs and GPUs of
each (``resources.num_cpus`` split over the workers, ``resources.gpus_per_worker``) and the DeepSpeed config
(``training.deepspeed``). ``train_on_workers`` trains:

- one worker without DeepSpeed: in this process (the Ray task the search started with the candidate's CPUs and
  GPUs, or the ``evo.retrain`` process);
- otherwise through ``ray.train.torch.TorchTrainer`` with that many workers, placed by Ray (a candidate may span
  the nodes of a cluster reached with ``RAY_ADDRESS``). Ray Train starts the process group (NCCL on GPUs, gloo on
  CPUs) and sets MASTER_ADDR/PORT, RANK, WORLD_SIZE and LOCAL_RANK; accelerate, under the HF Trainer inside
  ``run_training``, finds the initialised group and trains data-parallel. Each worker takes ``batch_size`` pairs per
  micro-step from the same seeded order, so the global batch is workers x batch_size x gradient_accumulation_steps.
  DeepSpeed (ZeRO-2/3) is handed to the Trainer's DeepSpeed integration in every worker.

Both ways run ``_train`` (the loss rebuilt from its graph, ``run_training``), then the task's ``evaluate`` on rank 0,
where the training ran (its GPU). Rank 0 hands the outcome, or the exception it stopped with, to a small actor that
the caller reads after ``fit``: a diverged or turned loss (every rank stops at the same step: the gradient norm
and the direction reading are all-reduced) and an evaluation error come back as the same exceptions as in one
process. A worker that dies or raises anything else fails the whole group; Ray Train's error is raised here.

Under DeepSpeed the shared reference cache is off: the reference model runs alongside the policy, sharded like it
(the cache's reference pass needs the whole model on one device)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from evo.config import ResourcesConfig, SearchConfig
from trainer.config import TrainingConfig, TrainRun
from trainer.losses.discovered import candidate_loss
from trainer.step_log import StepLogCallback
from trainer.train import TrainResult, run_training


@dataclass(frozen=True)
class Placement:
    """The workers that train one candidate."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    deepspeed: str | None = None  # a config name (zero2 | zero3) or a .json path

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"resources.workers_per_candidate must be >= 1, got {self.workers}")
        if self.deepspeed is not None and self.gpus_per_worker <= 0:
            raise ValueError(
                f"training.deepspeed ({self.deepspeed}) needs GPUs: set resources.gpus_per_worker >= 1 "
                "(or training.deepspeed: null on CPUs)"
            )

    @classmethod
    def of(cls, resources: ResourcesConfig, training: TrainingConfig) -> Placement:
        return cls(
            workers=resources.workers_per_candidate,
            cpus_per_worker=resources.num_cpus / resources.workers_per_candidate,
            gpus_per_worker=resources.gpus_per_worker,
            deepspeed=training.deepspeed,
        )

    @property
    def on_ray_train(self) -> bool:
        """Whether the training runs in Ray Train workers (else in the calling process)."""
        return self.workers > 1 or self.deepspeed is not None

    @property
    def gpus(self) -> float:
        return self.workers * self.gpus_per_worker

    def task_resources(self, in_task: bool = False) -> dict[str, float]:
        """What the candidate's Ray task holds: the candidate's CPUs and one worker's GPUs when it trains in the
        task (one worker, or ``in_task``: a procedure baseline), nothing when Ray Train's workers hold them."""
        if self.on_ray_train and not in_task:
            return {"num_cpus": 0, "num_gpus": 0}
        return {"num_cpus": self.cpus_per_worker * self.workers, "num_gpus": self.gpus_per_worker}


@dataclass(frozen=True)
class TrainTask:
    """One training and what rank 0 does with the checkpoint afterwards."""

    training: TrainingConfig
    run: TrainRun
    name: str
    graph: str | None = None  # a discovered loss's traced graph (JSON); None: training.loss from the registry
    step_log: str | None = None  # rank 0 appends each logged step here (trainer.step_log)
    evaluate: Callable[[str], Any] | None = None  # run on rank 0 with the checkpoint folder


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    evaluation: Any = None  # what the task's evaluate returned (None without one)

    @property
    def world_size(self) -> int:
        return self.result.metrics.get("world_size", 1)


def _train(task: TrainTask, deepspeed: str | None, rank: int) -> TrainResult:
    loss = candidate_loss(task.name, task.graph, task.training.direction_patience)
    callbacks = [StepLogCallback(task.step_log)] if task.step_log and rank == 0 else []
    return run_training(task.training, task.run, loss=loss, callbacks=callbacks, deepspeed=deepspeed)


def _evaluated(task: TrainTask, result: TrainResult) -> Trained:
    return Trained(result, task.evaluate(result.output_dir) if task.evaluate else None)


def init_ray(config: SearchConfig) -> None:
    """Connect to ``RAY_ADDRESS`` when set (an existing cluster), else start a local Ray on this machine."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=max(os.cpu_count() or 1, int(config.resources.num_cpus)),
            include_dashboard=False,
            log_to_driver=False,
        )


def train_on_workers(task: TrainTask, placement: Placement) -> Trained:
    """Train ``task`` on ``placement``'s workers and evaluate the checkpoint on rank 0 (see the module doc)."""
    if not placement.on_ray_train:
        return _evaluated(task, _train(task, None, rank=0))
    return _fit(task, placement)


class _ResultBox:
    """Holds what rank 0 hands back: a ``Trained`` or the exception it stopped with."""

    def __init__(self) -> None:
        self.outcome: Trained | BaseException | None = None

    def put(self, outcome: Trained | BaseException) -> None:
        self.outcome = outcome

    def get(self) -> Trained | BaseException | None:
        return self.outcome


def _worker_loop(config: dict) -> None:
    import ray.train

    from trainer.losses.discovered import CandidateTurned
    from trainer.trainer import CandidateDiverged

    task, box, deepspeed = config["task"], config["box"], config["deepspeed"]
    rank = ray.train.get_context().get_world_rank()
    try:
        result = _train(task, deepspeed, rank)
    except (CandidateDiverged, CandidateTurned) as err:  # every rank stops at the same step
        if rank == 0:
            ray.get(box.put.remote(err))
        return
    if rank != 0:
        return
    try:  # no collective is left to wait on: the other ranks have returned
        outcome: Trained | BaseException = _evaluated(task, result)
    except Exception as err:
        outcome = err
    ray.get(box.put.remote(outcome))


def _fit(task: TrainTask, placement: Placement) -> Trained:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run = task.run
    if placement.deepspeed is not None:  # the cache's reference pass needs the whole model on one device
        run = dataclasses.replace(run, ref_cache_dir=None)
    box = ray.remote(num_cpus=0)(_ResultBox).remote()
    resources = {"CPU": placement.cpus_per_worker}
    if placement.gpus_per_worker > 0:
        resources["GPU"] = placement.gpus_per_worker
    storage = Path(run.output_dir).resolve().parent / "ray_train"
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "task": dataclasses.replace(task, run=run),
            "box": box,
            "deepspeed": placement.deepspeed,
        },
        scaling_config=ScalingConfig(
            num_workers=placement.workers,
            use_gpu=placement.gpus_per_worker > 0,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            name=Path(run.output_dir).name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    try:
        trainer.fit()
        outcome = ray.get(box.get.remote())
    finally:
        ray.kill(box)
    if isinstance(outcome, BaseException):
        raise outcome
    if outcome is None:
        raise RuntimeError(f"Ray Train finished without a result from rank 0 of {task.name}")
    return outcome
