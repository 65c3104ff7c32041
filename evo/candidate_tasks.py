"""The driver's side of the training tasks: submitting a candidate at its rung as a Ray task, forwarding its live
steps, collecting results (timeouts and dead workers included) and recording them. ``Search`` inherits these;
they read and write the search's state (archive, tasks in flight, cascade, circuit breaker)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import ray

from evo.archive import Candidate
from evo.bandit import reward
from evo.circuit_breaker import CircuitOpen
from evo.job import CandidateJob, JobResult, run_job
from evo.live_steps import STEP_LOG
from evo.status import Status
from evo.workers import Placement
from trainer.models import cache_root

log = logging.getLogger(__name__)

# Run-level notes in the archive (shown under the leaderboard): arm -> why it was disabled, why
# proposing ended early, why the circuit breaker stopped the run. Each session of a run starts them afresh.
DISABLED_PROPOSERS, PROPOSING_ENDED, CIRCUIT_BREAKER = (
    "disabled_proposers",
    "proposing_ended",
    "circuit_breaker",
)


@ray.remote(
    max_retries=1
)  # a worker that dies is retried once; then ray.get raises and the driver records it
def _remote_job(job: CandidateJob) -> JobResult:
    return run_job(job)


@dataclass
class InFlight:
    candidate_id: int
    ref: ray.ObjectRef
    started: float


class CandidateTasks:
    """The training-task half of ``evo.loop.Search`` (a mixin: ``Search`` holds the state)."""

    def _submit(self, candidate: Candidate) -> None:
        assert self.data is not None
        while (
            len(self.in_flight) >= self.config.resources.max_in_flight
        ):  # proposing overlaps training; queuing not
            self._collect(block=True)
        job = CandidateJob(
            candidate_id=candidate.id,
            name=candidate.name,
            work_dir=str(self.run_dir / "candidates" / str(candidate.id)),
            train_path=str(self.data.train_path),
            heldout_path=str(self.data.heldout_path) if self.data.heldout_path else None,
            **self.cascade.job_settings(
                candidate.id, str(self.data.heldout_path) if self.data.heldout_path else None
            ),
            graph=None if candidate.loss else candidate.graph,
            loss=candidate.loss,
            pipeline=candidate.pipeline,
            ref_cache_dir=str(cache_root() / "refcache"),
            placement=Placement.of(self.config.resources, self.config.training),
        )
        ref = _remote_job.options(**job.placement.task_resources(in_task=job.pipeline is not None)).remote(
            job
        )
        self.in_flight[candidate.id] = InFlight(candidate.id, ref, time.monotonic())
        self.archive.update(candidate.id, attempts=candidate.attempts + 1)
        self.progress.event(f"candidate {candidate.id} ({candidate.name}): training")

    def _forward_steps(self, candidate_id: int) -> None:
        """Hand the step observers what the candidate's worker logged since the last look (its live curve)."""
        if not self.step_observers:
            return
        rows = self.steps.read(self.run_dir / "candidates" / str(candidate_id) / STEP_LOG)
        if rows:
            candidate = self.archive.get(candidate_id)
            for observer in self.step_observers:
                observer(candidate, rows)

    def _collect(self, block: bool) -> None:
        if not self.in_flight:
            return
        for candidate_id in self.in_flight:
            self._forward_steps(candidate_id)
        refs = [f.ref for f in self.in_flight.values()]
        ready, _ = ray.wait(
            refs, num_returns=1, timeout=1.0 if block else 0
        )  # a second: live curves, time limits
        by_ref = {f.ref: f for f in self.in_flight.values()}
        for ref in ready:
            flight = by_ref[ref]
            del self.in_flight[flight.candidate_id]
            self._forward_steps(flight.candidate_id)  # the curve's last steps before its result
            try:
                result: JobResult = ray.get(ref)
            except Exception as err:  # the worker died twice, or the task was cancelled
                result = JobResult(
                    flight.candidate_id,
                    Status.FAILED,
                    f"worker lost: {type(err).__name__}: {err}"[:800],
                    error_class=type(err).__name__,
                )
            self._record(result)
        limit = self.config.resources.task_timeout_s
        for flight in list(self.in_flight.values()):
            if time.monotonic() - flight.started > limit:
                ray.cancel(flight.ref, force=True)
                del self.in_flight[flight.candidate_id]
                self._record(
                    JobResult(
                        flight.candidate_id,
                        Status.FAILED,
                        f"exceeded the time limit of {limit:.0f}s",
                        error_class="TaskTimeout",
                    )
                )
        self._drain_resubmits()

    def _drain_resubmits(self, promote: bool = False) -> None:
        """Submit the candidates waiting for their next rung, after the promotions when ``promote``. ``_submit`` may
        collect and so drain again: the queue is shared, each candidate is popped once."""
        self.resubmit.extend(self.cascade.decide() if promote else [])
        while self.resubmit:
            self._submit(self.archive.get(self.resubmit.pop(0)))

    def _record(self, result: JobResult) -> None:
        candidate = self.archive.get(result.candidate_id)
        self.archive.update(
            result.candidate_id,
            status=result.status,
            reason=result.reason,
            fitness=result.fitness,
            stderr=result.stderr,
            n=result.n,
            metrics={**candidate.metrics, **result.metrics},
            timings={**candidate.timings, **result.timings},
        )
        if result.status == Status.DONE and self.cascade.record(
            candidate,
            result.fitness,
            result.stderr,
            result.n,
            result.metrics.get("fitness_details", {}).get("per_item", {}),
            result.timings.get("total_s"),
        ):
            self.resubmit.append(candidate.id)
        if candidate.proposer in self.proposers:
            self.bandit.update(
                candidate.proposer, reward(result.status, result.fitness, candidate.best_before)
            )
        self.progress.result(self.archive, candidate, result)
        self._finalized(result.candidate_id)
        try:
            self.breaker.record(result.candidate_id, result.status, result.error_class, result.reason)
        except CircuitOpen as err:
            for candidate_id in err.candidate_ids:  # not the losses' fault: trained again on --resume
                self.archive.update(
                    candidate_id, status=Status.TRAINING, reason=f"stopped by the circuit breaker: {err}"
                )
            self.archive.set_note(CIRCUIT_BREAKER, str(err))
            raise
