"""One candidate's work inside its Ray task: rebuild its loss from the stored graph, train with the shared trainer
on the candidate's workers (``evo.workers``: in the task for one, through Ray Train for several), evaluate on rank 0.

A proposed candidate's job carries the graph the sandbox traced (JSON), never its source: no candidate code runs in
the worker. Everything that can go wrong (a tampered graph included) becomes a returned ``JobResult`` with status
``failed`` and the reason; the worker never raises for a bad candidate. The trained checkpoint is deleted after
evaluation unless ``keep_model``."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from evaluators import evaluate, make_spec
from evaluators.fitness import Fitness, FitnessUnavailable
from evo.config import FitnessConfig
from evo.live_steps import STEP_LOG
from evo.status import Status
from evo.workers import Placement, TrainTask, train_on_workers
from trainer.config import TrainingConfig, TrainRun
from trainer.losses.discovered import CandidateTurned
from trainer.train import TrainResult
from trainer.trainer import CandidateDiverged


@dataclass(frozen=True)
class CandidateJob:
    candidate_id: int
    name: str
    work_dir: str
    train_path: str
    heldout_path: str | None
    training: TrainingConfig
    fitness: FitnessConfig
    graph: str | None = None  # a proposed loss: the JSON of its traced graph (sandbox.graph), or
    loss: str | None = None  # a registry loss (baselines), or
    pipeline: str | None = (
        None  # a fixed method's whole procedure (trainer.pipelines.baselines: spin, spa, ...)
    )
    ref_cache_dir: str | None = None
    keep_model: bool = False
    report_to: str = "none"
    placement: Placement = field(default_factory=Placement)  # the workers it trains on (resources)


@dataclass(frozen=True)
class JobResult:
    candidate_id: int
    status: Status  # DONE | FAILED
    reason: str | None = None
    fitness: float | None = None
    stderr: float | None = None
    n: int | None = None
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    error_class: str | None = (
        None  # what kind of failure (an exception's class name): the circuit breaker's key
    )


class NonFiniteFitness(ValueError):
    """An evaluator returned a NaN or infinite score; never recorded as a fitness."""


def _finite(name: str, fitness: Fitness) -> Fitness:
    if math.isfinite(fitness.score) and math.isfinite(fitness.stderr):
        return fitness
    why = "; ".join(f"{k}: {v}" for k, v in fitness.details.items() if k.endswith("_error") and v)
    raise NonFiniteFitness(
        f"the {name} evaluator returned score {fitness.score} +- {fitness.stderr}"
        + (f" ({why})" if why else "")
    )


def _spec_options(name: str, fitness: FitnessConfig, job: CandidateJob) -> dict:
    options = dict(getattr(fitness, "alpaca_eval" if name.startswith("alpaca_eval") else name))
    if name == "proxy":
        options.setdefault("data", job.heldout_path)
        options.setdefault("reference", job.training.model)
        options.setdefault("beta", job.training.beta)
    return options


def preflight(fitness: FitnessConfig) -> None:
    """Fail before any training when the fitness cannot be computed on this machine: a judged benchmark without
    its judge's key, AlpacaEval LC without df_gamed.csv (``FitnessUnavailable`` says what and which option)."""
    names = list(fitness.weights) if fitness.kind == "weighted" else [fitness.kind]
    for name in names:
        if name not in ("mt_bench", "alpaca_eval", "alpaca_eval_lc"):
            continue
        spec = make_spec(
            name, **dict(getattr(fitness, "alpaca_eval" if name.startswith("alpaca_eval") else name))
        )
        try:
            spec.judge.api_key()
        except RuntimeError as err:
            raise FitnessUnavailable(f"fitness {name}: {err}") from err
        if name.startswith("alpaca_eval"):
            from evaluators.alpaca_eval import lc_gamed_file

            lc_gamed_file(spec)


def score(model_dir: str, job: CandidateJob) -> Fitness:
    """The configured fitness: one evaluator, or a weighted sum (stderr combined as independent). A non-finite
    score raises ``NonFiniteFitness`` with the evaluator's reason."""
    config = job.fitness
    if config.kind != "weighted":
        return _finite(
            config.kind,
            evaluate(model_dir, make_spec(config.kind, **_spec_options(config.kind, config, job))),
        )
    if not config.weights:
        raise ValueError("fitness.kind 'weighted' needs fitness.weights")
    total, variance, parts = 0.0, 0.0, {}
    for name, weight in config.weights.items():
        part = _finite(name, evaluate(model_dir, make_spec(name, **_spec_options(name, config, job))))
        total += weight * part.score
        variance += (weight * part.stderr) ** 2
        parts[name] = part.to_json()
    n = min(p["n"] for p in parts.values())
    return Fitness(total, math.sqrt(variance), n, {"parts": parts})


def _run_pipeline(job: CandidateJob, run: TrainRun) -> TrainResult:
    """A fixed method's procedure (SPIN iterations, SPA self-annotation, AEPO pairs + DPO) on the run's data,
    every training step with the run's training config (the method's loss in place of its loss); the final
    checkpoint is copied to where the evaluator looks."""
    from trainer.pipelines.baselines import run_baseline

    started = time.monotonic()
    checkpoint = run_baseline(job.pipeline, job.training, run.data, str(Path(job.work_dir) / "pipeline"))
    shutil.copytree(checkpoint, run.output_dir, dirs_exist_ok=True)
    metrics_file = Path(checkpoint) / "metrics.json"
    losses = json.loads(metrics_file.read_text()).get("losses", []) if metrics_file.exists() else []
    return TrainResult(
        output_dir=run.output_dir,
        steps=len(losses),
        seconds=time.monotonic() - started,
        first_loss=losses[0] if losses else float("nan"),
        last_loss=losses[-1] if losses else float("nan"),
        losses=losses,
        metrics={"pipeline": job.pipeline},
    )


def _train_and_score(
    job: CandidateJob, run: TrainRun, timings: dict[str, float]
) -> tuple[TrainResult, Fitness, int]:
    """A loss on the job's workers, scored on rank 0 where it trained: the result, fitness and world size."""
    if not job.loss and job.graph is None:  # never train the recipe's own loss in a candidate's name
        raise ValueError(
            f"candidate {job.candidate_id} has no stored graph to train (it must validate first)"
        )
    task = TrainTask(
        training=job.training.with_loss(job.loss) if job.loss else job.training,
        run=run,
        name=job.name,
        graph=None if job.loss else job.graph,
        step_log=str(Path(job.work_dir) / STEP_LOG),
        evaluate=partial(_timed_score, job=job),
    )
    trained = train_on_workers(task, job.placement)
    fitness, eval_s = trained.evaluation
    timings["train_s"] = trained.result.seconds
    timings["eval_s"] = eval_s
    return trained.result, fitness, trained.world_size


def _timed_score(model_dir: str, job: CandidateJob) -> tuple[Fitness, float]:
    started = time.monotonic()
    return score(model_dir, job), time.monotonic() - started


def run_job(job: CandidateJob) -> JobResult:
    work = Path(job.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "worker.pid").write_text(
        str(os.getpid())
    )  # which process trains it (for operators and fault tests)
    model_dir = work / "model"
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        run = TrainRun(
            data=job.train_path,
            output_dir=str(model_dir),
            ref_cache_dir=job.ref_cache_dir,
            report_to=job.report_to,
            run_name=f"{job.candidate_id}-{job.name}",
        )
        if job.pipeline is not None:  # a procedure trains in this task, on one worker's resources
            trained, world_size = _run_pipeline(job, run), 1
            timings["train_s"] = time.monotonic() - started
            scored_at = time.monotonic()
            fitness = score(str(model_dir), job)
            timings["eval_s"] = time.monotonic() - scored_at
        else:
            trained, fitness, world_size = _train_and_score(job, run, timings)
    except CandidateDiverged as err:
        return JobResult(
            job.candidate_id,
            Status.FAILED,
            f"training diverged: {err}",
            timings=timings,
            error_class=type(err).__name__,
        )
    except CandidateTurned as err:
        return JobResult(
            job.candidate_id,
            Status.FAILED,
            f"direction check: {err}",
            timings=timings,
            error_class=type(err).__name__,
        )
    except Exception as err:  # a bad candidate must not take the loop down
        tail = "".join(traceback.format_exception(err)[-3:])[-1500:]
        return JobResult(
            job.candidate_id,
            Status.FAILED,
            f"{type(err).__name__}: {err}"[:500] + f"\n{tail}",
            timings=timings,
            error_class=type(err).__name__,
        )
    finally:
        if not job.keep_model:
            shutil.rmtree(model_dir, ignore_errors=True)
            shutil.rmtree(work / "pipeline", ignore_errors=True)
    metrics = {
        "steps": trained.steps,
        "first_loss": trained.first_loss,
        "last_loss": trained.last_loss,
        "losses": trained.losses,
        "ref_cache_hit": trained.metrics.get("ref_cache_hit"),
        "world_size": world_size,
        "fitness_details": fitness.details,
    }
    timings["total_s"] = time.monotonic() - started
    return JobResult(
        job.candidate_id, Status.DONE, None, fitness.score, fitness.stderr, fitness.n, metrics, timings
    )
