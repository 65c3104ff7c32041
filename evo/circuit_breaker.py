"""Stops a run whose candidates keep failing for the same reason of the setup, not of the losses.

A missing judge key, a wrong path, a GPU that runs out of memory on every candidate: each makes every candidate
fail with the same error class, and without a stop the run would spend its whole budget recording failures.
``limit`` candidates in a row that fail with one error class (a candidate's own fault, such as a diverging loss,
breaks the series, like any success) open the breaker."""

from __future__ import annotations

from dataclasses import dataclass, field

from evo.status import Status

# Error classes a loss earns by itself: it diverged (trainer), the sandbox rejected or could not trace it, or its
# graph failed on these inputs (sandbox.interpreter).
CANDIDATE_FAULTS = frozenset(
    {
        "CandidateDiverged",
        "CandidateTurned",
        "PolicyError",
        "LossRejected",
        "GraphRuntimeError",
        "GuardMismatch",
    }
)


class CircuitOpen(RuntimeError):
    """Too many candidates in a row failed with the same infrastructure error; the message says which and why."""

    def __init__(self, message: str, candidate_ids: tuple[int, ...]) -> None:
        super().__init__(message)
        self.candidate_ids = candidate_ids


@dataclass
class CircuitBreaker:
    limit: int = 3  # 0 never opens
    error_class: str | None = None
    streak: list[int] = field(default_factory=list)

    def record(self, candidate_id: int, status: Status, error_class: str | None, reason: str | None) -> None:
        """Count one finished candidate; raise ``CircuitOpen`` when it completes a series of ``limit`` failures."""
        if status != Status.FAILED or error_class is None or error_class in CANDIDATE_FAULTS:
            self.error_class, self.streak = None, []
            return
        if error_class != self.error_class:
            self.error_class, self.streak = error_class, []
        self.streak.append(candidate_id)
        if self.limit and len(self.streak) >= self.limit:
            first_line = (
                (reason or "").strip().splitlines()[0].removeprefix(f"{error_class}: ") if reason else ""
            )
            raise CircuitOpen(
                f"{len(self.streak)} candidates in a row ({', '.join(map(str, self.streak))}) failed with "
                f"{error_class}: {first_line[:300]}\nThat is a problem of the setup, not of the losses, so the run "
                "stops here; those candidates will be trained again when the run is resumed after the fix.",
                tuple(self.streak),
            )
