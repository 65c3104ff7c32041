"""Retrain a found loss at full scale and record the result next to its search-scale fitness.

    python -m evo.retrain runs/<run-id> --rank 1 --recipe runs/recipes/zephyr-7b-gemma-full.yaml
    python -m evo.retrain runs/<run-id> --candidate 17 --recipe runs/recipes/smollm2-1.7b.yaml

Picks a candidate from the run's archive (``--rank K``: K-th on the leaderboard of done candidates; or
``--candidate ID``), trains its loss (a baseline's registry loss, or a discovered loss rebuilt from its stored graph;
a candidate archived before graphs were stored is validated again in the sandbox for one) with the recipe's ``training`` settings on the recipe's ``data``, scores the checkpoint with the recipe's
``fitness`` and every evaluator in ``retrain.evaluators``, and adds a row to the archive's ``retrains`` table.

Where training runs: as a search candidate does (``evo.workers``): the recipe's ``resources.workers_per_candidate``
workers with ``resources.gpus_per_worker`` GPUs each and its DeepSpeed config (``training.deepspeed``) through Ray
Train (``RAY_ADDRESS``, or a Ray started here), or in this process for one worker without DeepSpeed. The
evaluations run on rank 0, where the model trained."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluators.fitness import Fitness
from evo.archive import Archive, Candidate
from evo.config import SearchConfig, load_config, save_config, to_dict
from evo.data_prep import prepare_data
from evo.job import CandidateJob, score
from evo.retrain_store import RetrainRecord, RetrainStore
from evo.status import TRAINED, Status
from evo.workers import Placement, TrainTask, init_ray, train_on_workers
from sandbox.executor import SandboxPool, ZygoteError
from sandbox.validate import validate_source
from trainer.config import TrainingConfig, TrainRun
from trainer.losses.discovered import CandidateTurned
from trainer.models import cache_root
from trainer.trainer import CandidateDiverged

log = logging.getLogger("evo.retrain")


def select_candidate(archive: Archive, rank: int | None = None, candidate_id: int | None = None) -> Candidate:
    """The ``rank``-th done candidate of the leaderboard (fitness descending), or the candidate with that id; a
    loss, not a procedure baseline (``spin``, ``spa``, ...: those run with their ``trainer.pipelines`` command)."""
    if (rank is None) == (candidate_id is None):
        raise ValueError("give exactly one of rank and candidate_id")
    if rank is not None:
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        done = archive.top(rank)
        if len(done) < rank:
            raise ValueError(f"rank {rank} asked, but the archive holds {len(done)} done candidate(s)")
        candidate = done[rank - 1]
    else:
        candidate = archive.get(candidate_id)
    if candidate.status not in TRAINED:
        raise ValueError(
            f"candidate {candidate.id} ({candidate.name}) is {candidate.status}: only candidates whose code passed "
            f"the sandbox ({', '.join(TRAINED)}) can be retrained"
        )
    if candidate.pipeline:
        raise ValueError(
            f"candidate {candidate.id} is the {candidate.pipeline} procedure baseline, not a loss: run "
            "that procedure with its trainer.pipelines command"
        )
    return candidate


def with_graph(candidate: Candidate) -> Candidate:
    """The candidate with its traced graph. A discovered loss archived before graphs were stored is validated
    again (its source runs only in a sandbox child); one that no longer validates is refused (``ValueError``)."""
    if candidate.loss or candidate.graph is not None:
        return candidate
    log.info("candidate %d was archived without a graph: validating it again", candidate.id)
    with SandboxPool() as pool:
        verdict = validate_source(candidate.code, pool=pool)
    if not verdict.valid or verdict.graph is None:
        raise ValueError(
            f"candidate {candidate.id} ({candidate.name}) was archived without a graph and does not validate "
            f"now: [{verdict.stage}] {verdict.error}"
        )
    return dataclasses.replace(candidate, graph=json.dumps(verdict.graph))


def candidate_training(candidate: Candidate, training: TrainingConfig) -> TrainingConfig:
    """The recipe's training with the candidate's loss: a baseline's registry loss, or (for a discovered loss,
    whose graph is passed to the trainer) the recipe's own."""
    return training.with_loss(candidate.loss) if candidate.loss else training


def _scores(model_dir: str, job: CandidateJob, names: tuple[str, ...]) -> tuple[Fitness, dict, float]:
    """The recipe's fitness and each extra evaluator's, with the options of ``fitness.<name>`` (on rank 0, where
    the model trained); the seconds they took."""
    started = time.monotonic()
    fitness = score(model_dir, job)
    evaluations = {
        name: score(
            model_dir, dataclasses.replace(job, fitness=dataclasses.replace(job.fitness, kind=name))
        ).to_json()
        for name in names
        if name != job.fitness.kind
    }
    return fitness, evaluations, time.monotonic() - started


def retrain(candidate: Candidate, config: SearchConfig, recipe: str, output_dir: Path) -> RetrainRecord:
    """Train and evaluate one candidate with one recipe on the recipe's workers (``evo.workers``, the search's
    path); failures come back as a ``failed`` record."""
    started = time.monotonic()
    record = RetrainRecord(
        candidate_id=candidate.id,
        recipe=recipe,
        status=Status.DONE,
        fitness_kind=config.fitness.kind,
        output_dir=str(output_dir),
        config=to_dict(config),
    )
    timings: dict[str, float] = {}
    try:
        if not candidate.loss and candidate.graph is None:  # never train the recipe's own loss in its name
            raise ValueError(f"candidate {candidate.id} has no stored graph (with_graph validates it again)")
        placement = Placement.of(config.resources, config.training)
        record = dataclasses.replace(record, launch=dataclasses.asdict(placement))
        if placement.on_ray_train:
            init_ray(config)
        data = prepare_data(config, output_dir)
        timings["data_s"] = time.monotonic() - started
        model_dir = output_dir / "model"
        run = TrainRun(
            data=str(data.train_path),
            output_dir=str(model_dir),
            ref_cache_dir=str(cache_root() / "refcache"),
            report_to="wandb" if config.wandb else "none",
            run_name=f"retrain-{candidate.id}-{candidate.name}-{recipe}",
        )
        job = CandidateJob(
            candidate_id=candidate.id,
            name=candidate.name,
            work_dir=str(output_dir),
            train_path=str(data.train_path),
            heldout_path=str(data.heldout_path) if data.heldout_path else None,
            training=config.training,
            fitness=config.fitness,
            graph=None if candidate.loss else candidate.graph,
            loss=candidate.loss,
            keep_model=True,
        )
        task = TrainTask(
            training=candidate_training(candidate, config.training),
            run=run,
            name=candidate.name,
            graph=job.graph,
            evaluate=partial(_scores, job=job, names=config.retrain.evaluators),
        )
        trained = train_on_workers(task, placement)
        fitness, evaluations, timings["eval_s"] = trained.evaluation
        timings["train_s"] = trained.result.seconds
        record = dataclasses.replace(
            record,
            train={
                "loss": trained.result.metrics.get("loss"),
                "steps": trained.result.steps,
                "first_loss": trained.result.first_loss,
                "last_loss": trained.result.last_loss,
                "world_size": trained.world_size,
            },
        )
    except Exception as err:  # recorded, like a failed candidate in the search
        if isinstance(err, CandidateDiverged):
            reason = f"training diverged: {err}"
        elif isinstance(err, CandidateTurned):
            reason = f"direction check: {err}"
        else:
            reason = f"{type(err).__name__}: {err}"
        log.exception("retraining candidate %d failed", candidate.id)
        timings["total_s"] = time.monotonic() - started
        return dataclasses.replace(record, status=Status.FAILED, reason=reason[:2000], timings=timings)
    timings["total_s"] = time.monotonic() - started
    return dataclasses.replace(
        record,
        fitness=fitness.score,
        stderr=fitness.stderr,
        n=fitness.n,
        evaluations=evaluations,
        timings=timings,
    )


def render(candidate: Candidate, record: RetrainRecord, console: Console) -> None:
    table = Table(title=f"candidate {candidate.id} ({candidate.name}): search scale vs {record.recipe}")
    for column in ("evaluator", "search", "retrain"):
        table.add_column(column)
    search = (
        f"{candidate.fitness:.4f} +- {candidate.stderr or 0.0:.4f}" if candidate.fitness is not None else "-"
    )
    retrained = (
        f"{record.fitness:.4f} +- {record.stderr:.4f} (n={record.n})" if record.fitness is not None else "-"
    )
    table.add_row(record.fitness_kind, search, retrained)
    for name, result in record.evaluations.items():
        table.add_row(name, "-", f"{result['score']:.4f} +- {result['stderr']:.4f} (n={result['n']})")
    console.print(table)
    if record.status == Status.FAILED:
        console.print(f"[red]retraining failed[/red]: {record.reason}")
    console.print(f"checkpoint and logs: {record.output_dir}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evo.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a search run folder (holds archive.sqlite and config.yaml)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--rank", type=int, help="leaderboard rank among done candidates (1 = best)")
    which.add_argument("--candidate", type=int, help="candidate id")
    parser.add_argument("--recipe", required=True, help="YAML recipe with the full-scale settings")
    parser.add_argument("--output-dir", help="default: RUN_DIR/retrains/<candidate id>-<recipe name>")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.run_dir)
    archive_path = run_dir / "archive.sqlite"
    if not archive_path.exists():
        print(f"no archive at {archive_path}", file=sys.stderr)
        return 2
    config = load_config(args.recipe)
    recipe = Path(args.recipe).stem
    archive = Archive(archive_path)
    try:
        candidate = with_graph(select_candidate(archive, args.rank, args.candidate))
    except (ValueError, KeyError, ZygoteError) as err:
        print(f"cannot retrain: {err}", file=sys.stderr)
        return 2
    finally:
        archive.close()
    output_dir = Path(args.output_dir or run_dir / "retrains" / f"{candidate.id}-{recipe}")
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(output_dir / "retrain.log")],
    )
    console = Console()
    console.print(f"retraining candidate {candidate.id} ({candidate.name}) with {recipe} into {output_dir}")
    record = retrain(candidate, config, recipe, output_dir)
    store = RetrainStore(archive_path)
    store.add(record)
    store.close()
    render(candidate, record, console)
    return 0 if record.status == Status.DONE else 1


if __name__ == "__main__":
    raise SystemExit(main())
