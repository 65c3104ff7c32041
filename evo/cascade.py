"""Successive halving over the fidelity rungs, decided by the driver from the archive alone (so resume works).

A candidate trains at the rung after its highest recorded one (``next_rung``): rung 0 first. Each result is kept in
the archive's ``rung_results`` (``record``). What happens next:

- the last rung: decision ``final``, or ``duplicate`` (as below) for a proposed candidate that scored like one
  already scored there;
- a baseline (generation 0) below the last rung: decision ``reference``, trained again at the next rung at once, so
  every rung has DPO to pair against on the same items;
- a proposed candidate below the last rung whose per-item outcomes equal those of a candidate already scored at
  that rung, with gradient weights close to its (``fitness.behaviour``): decision ``duplicate`` (status
  ``duplicate``, ``duplicate_of``), not trained further;
- else it waits, status ``done`` at that rung.

The promotion rule (``decide``), run at the end of every generation and, after the last generation, until nothing
is left to decide: the waiting results of each rung are ranked by fitness (ties: the older candidate first); the
best ``round(k x promote_fraction)`` (at least one) of the ``k`` waiting go on (``promoted``, status ``training``),
the rest stop at that rung (``stopped``). Every decision is kept with its reason, logged, and shown in progress."""

from __future__ import annotations

import math

from evo.archive import Archive, Candidate, RungResult
from evo.behaviour import BehaviourIndex, BehaviourMatch, cosine, outcome_agreement
from evo.config import SearchConfig
from evo.progress import SearchProgress
from evo.rungs import promotions, rung_fitness, rung_training
from evo.status import Status

PROMOTED, STOPPED, REFERENCE, DUPLICATE, FINAL = "promoted", "stopped", "reference", "duplicate", "final"


class Cascade:
    def __init__(self, config: SearchConfig, archive: Archive, progress: SearchProgress) -> None:
        self.rungs = config.fitness.rungs
        self.fraction = config.fitness.promote_fraction
        self.dedup = config.fitness.behaviour
        self.config = config
        self.archive = archive
        self.progress = progress
        self.behaviour = BehaviourIndex(config.training.beta)

    @property
    def last(self) -> int:
        return len(self.rungs) - 1

    def next_rung(self, candidate_id: int) -> int:
        """The rung a candidate trains at now: the one after its highest recorded result."""
        return min(len(self.archive.rung_results(candidate_id)), self.last)

    def job_settings(self, candidate_id: int, heldout_path: str | None) -> dict:
        """The ``training`` and ``fitness`` of the candidate's job at its rung."""
        rung = self.rungs[self.next_rung(candidate_id)]
        return {
            "training": rung_training(self.config.training, rung),
            "fitness": rung_fitness(self.config.fitness, rung, heldout_path),
        }

    # ---- before training ----------------------------------------------------------------------------------------
    def gradient_duplicate(self, candidate_id: int, graph_json: str | None) -> BehaviourMatch | None:
        """An archived candidate whose per-pair gradient weights equal this graph's up to scale, if any."""
        if not self.dedup.enabled:
            return None
        others = self.archive.by_status(Status.TRAINING, Status.DONE)
        return self.behaviour.same_gradients(candidate_id, graph_json, others, self.dedup.gradient_cosine)

    # ---- after a rung ---------------------------------------------------------------------------------------------
    def record(
        self,
        candidate: Candidate,
        fitness: float,
        stderr: float | None,
        n: int | None,
        per_item: dict,
        seconds: float | None,
    ) -> bool:
        """Keep a done candidate's result at its rung; True when it trains again at once (a baseline)."""
        rung = self.next_rung(candidate.id)
        self.archive.add_rung_result(RungResult(candidate.id, rung, fitness, stderr, n, per_item, seconds))
        self.progress.event(
            f"candidate {candidate.id} ({candidate.name}): rung {rung}/{self.last} fitness "
            f"{fitness:.4f} +- {stderr or 0.0:.4f} on {n} items"
        )
        if rung == self.last:
            self._final(candidate, rung, per_item)
            return False
        if candidate.generation == 0:
            self._decide(
                candidate, rung, REFERENCE, "a baseline is scored at every rung (deltas are paired there)"
            )
            self.archive.update(candidate.id, status=Status.TRAINING)
            return True
        self._duplicate_if_seen(candidate, rung, per_item)
        return False

    def _final(self, candidate: Candidate, rung: int, per_item: dict) -> None:
        """The full evaluation's decision; a proposal that scored like a scored candidate item by item, with close
        gradient weights, is a duplicate even here (the clones of a one-rung search stay off the leaderboard and out
        of the confirmation)."""
        if candidate.generation == 0 or not self._duplicate_if_seen(candidate, rung, per_item):
            self._decide(candidate, rung, FINAL, "the full evaluation")

    def _duplicate_if_seen(self, candidate: Candidate, rung: int, per_item: dict) -> bool:
        match = self._outcome_duplicate(candidate, rung, per_item)
        if match is None:
            return False
        self._decide(candidate, rung, DUPLICATE, match.reason)
        self.archive.update(
            candidate.id, status=Status.DUPLICATE, duplicate_of=match.original_id, reason=match.reason
        )
        return True

    def _outcome_duplicate(self, candidate: Candidate, rung: int, per_item: dict) -> BehaviourMatch | None:
        if not self.dedup.enabled or not per_item:
            return None
        mine = self.behaviour.weights(candidate.id, candidate.graph)
        if mine is None:
            return None
        for result in self.archive.rung_results():
            if result.rung != rung or result.candidate_id == candidate.id or result.decision == DUPLICATE:
                continue
            other = self.archive.get(result.candidate_id)
            theirs = self.behaviour.weights(other.id, other.graph)
            if theirs is None:
                continue
            agreement, similarity = outcome_agreement(per_item, result.per_item), cosine(mine, theirs)
            if agreement >= self.dedup.outcome_agreement and similarity >= self.dedup.outcome_gradient_cosine:
                return BehaviourMatch(
                    other.id,
                    f"trains like candidate {other.id} ({other.name}): the same outcome on {agreement:.0%} of the "
                    f"rung-{rung} items and gradient weights at cosine {similarity:.4f}",
                )
        return None

    # ---- promotion ------------------------------------------------------------------------------------------------
    def waiting(self) -> dict[int, list[RungResult]]:
        """Undecided results below the last rung of done proposed candidates, by rung, best first."""
        done = {c.id for c in self.archive.by_status(Status.DONE) if c.generation > 0}
        by_rung: dict[int, list[RungResult]] = {}
        for result in self.archive.rung_results():
            if result.decision is None and result.rung < self.last and result.candidate_id in done:
                by_rung.setdefault(result.rung, []).append(result)
        for results in by_rung.values():
            results.sort(key=lambda r: (-r.fitness if math.isfinite(r.fitness) else math.inf, r.candidate_id))
        return by_rung

    def decide(self) -> list[int]:
        """Promote the best fraction of every rung's waiting results; returns the candidates to train again."""
        promoted = []
        for rung, results in sorted(self.waiting().items()):
            keep = promotions(len(results), self.fraction)
            for rank, result in enumerate(results, start=1):
                candidate = self.archive.get(result.candidate_id)
                why = (
                    f"rank {rank} of {len(results)} at rung {rung} (fitness {result.fitness:.4f}); the best {keep} "
                    f"go on (promote_fraction {self.fraction})"
                )
                if rank <= keep:
                    self._decide(candidate, rung, PROMOTED, why)
                    self.archive.update(candidate.id, status=Status.TRAINING)
                    promoted.append(candidate.id)
                else:
                    self._decide(candidate, rung, STOPPED, why)
        return promoted

    def unfinished_baselines(self) -> list[int]:
        """Done baselines below the last rung (a run stopped between their rungs): to train at the next one."""
        below = [
            c
            for c in self.archive.in_generation(0)
            if c.status == Status.DONE and (c.rung or 0) < self.last and c.rung is not None
        ]
        for candidate in below:
            self.archive.update(candidate.id, status=Status.TRAINING)
        return [c.id for c in below]

    def _decide(self, candidate: Candidate, rung: int, decision: str, reason: str) -> None:
        self.archive.decide_rung(candidate.id, rung, decision, reason)
        if decision != FINAL:
            self.progress.event(
                f"candidate {candidate.id} ({candidate.name}) at rung {rung}: {decision}: {reason}"
            )
