"""The search driver: propose -> validate (sandbox) -> deduplicate -> train + evaluate (Ray task) per rung -> record.

The driver is the archive's only writer. It keeps proposing while candidate tasks run, sends sandbox failures
back to the LLM for repair, never trains a duplicate (same fingerprint, or same gradient weights: evo.behaviour),
promotes through the fidelity rungs (evo.cascade), and turns every failure into a recorded status. A candidate
that validates is stored with its traced graph, and its training task gets that graph, never the source. The
isolation the sandbox could not get on this machine is recorded in the archive and said loudly. A proposer that
can no longer propose (its budget spent, its server gone) is disabled with the reason; when none is left,
proposing ends and the candidates in flight finish. Candidates that keep failing for one reason of the setup open
the circuit breaker, which stops the run. All state lives in the archive, so a resumed search continues a run
killed at any moment."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import ray

from evo.archive import Archive, Candidate
from evo.bandit import ProposerBandit
from evo.behaviour import BehaviourMatch
from evo.candidate_tasks import CIRCUIT_BREAKER, DISABLED_PROPOSERS, PROPOSING_ENDED, CandidateTasks, InFlight
from evo.cascade import Cascade
from evo.circuit_breaker import CircuitBreaker
from evo.config import SearchConfig
from evo.data_prep import TrainingData, prepare_data
from evo.live_steps import StepTail
from evo.progress import SearchProgress
from evo.proposers.base import Proposal, Proposer, ProposerUnavailable, Unparseable
from evo.status import Status
from sandbox.executor import SandboxPool
from sandbox.validate import ValidationResult, validate_source
from trainer.losses import get_loss_spec
from trainer.pipelines.baseline_names import baseline_loss

log = logging.getLogger(__name__)


class Search(CandidateTasks):
    def __init__(self, config: SearchConfig, run_dir: Path, proposers: dict[str, Proposer]) -> None:
        self.config = config
        self.run_dir = run_dir
        self.archive = Archive(run_dir / "archive.sqlite")
        self.proposers = proposers
        self.bandit = ProposerBandit.from_archive(list(proposers), self.archive, seed=config.seed)
        self.pool = SandboxPool().start()
        self.in_flight: dict[int, InFlight] = {}
        self.data: TrainingData | None = None
        self.progress = SearchProgress(config)
        self.observers: list[
            Callable[[Candidate], None]
        ] = []  # told of every candidate that reaches a final status
        self.step_observers: list[Callable[[Candidate, list[dict]], None]] = []  # told of new training steps
        self.steps = StepTail()
        self.breaker = CircuitBreaker(config.resources.max_failures_in_a_row)
        self.proposing_ended: str | None = None
        self.cascade = Cascade(config, self.archive, self.progress)  # fidelity rungs and behaviour dedup
        self.resubmit: list[int] = []  # candidates to train at their next rung (submitted after a collect)

    def _finalized(self, candidate_id: int) -> None:
        candidate = self.archive.get(candidate_id)
        for observer in self.observers:
            observer(candidate)

    def close(self) -> None:
        for flight in self.in_flight.values():
            ray.cancel(flight.ref, force=True)
        self.pool.close()
        self.archive.close()
        self.progress.stop()

    # ---- one run ------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Raises ``CircuitOpen`` when the circuit breaker stops the run."""
        self.data = prepare_data(self.config, self.run_dir)
        for key in (DISABLED_PROPOSERS, PROPOSING_ENDED, CIRCUIT_BREAKER):
            self.archive.set_note(key, None)
        self.progress.start()
        self._record_isolation()
        self._resume_interrupted()
        self.resubmit.extend(self.cascade.unfinished_baselines())
        self._baselines()
        for generation in range(1, self.config.generations + 1):
            while (
                self.proposing_ended is None
                and len(self.archive.in_generation(generation)) < self.config.population
            ):
                self._collect(block=False)
                self._propose_and_submit(generation)
            while self.in_flight:
                self._collect(block=True)
            self._drain_resubmits(promote=True)  # promotions (evo.cascade) at the end of each generation
            if self.proposing_ended is not None:
                break
        while (
            self.in_flight or self.cascade.waiting()
        ):  # the baselines of a run with no generation; last rungs
            self._drain_resubmits(promote=True)
            self._collect(block=True)
        self.progress.stop()

    def _record_isolation(self) -> None:
        missing = self.pool.isolation_missing
        recorded = self.archive.record_isolation_missing(missing)
        if missing:
            self.progress.warn(
                f"sandbox: the validating children run WITHOUT {', '.join(missing)} on this machine: isolation is "
                "weaker than designed (recorded in the archive)"
            )
        elif recorded:
            self.progress.warn(
                f"sandbox: an earlier session of this run validated WITHOUT {', '.join(recorded)}"
            )
        else:
            log.info("sandbox: the validating children have every isolation property")

    # ---- generation 0 and resume ----------------------------------------------------------------------------------
    def _baselines(self) -> None:
        existing = {c.name for c in self.archive.in_generation(0)}
        for name in self.config.baselines:
            if name in existing:
                continue
            loss = baseline_loss(name)
            if loss is None:
                cid = self.archive.add(
                    0,
                    "baseline",
                    Status.TRAINING,
                    name=name,
                    thought=f"baseline: the {name} procedure",
                    pipeline=name,
                )
                self._submit(self.archive.get(cid))
                continue
            spec = get_loss_spec(loss)
            fingerprint = canonical = graph = None
            if (
                spec.level == "sequence"
            ):  # trusted code that trains as itself; its graph serves novelty and reports
                verdict = validate_source(spec.source, entry=loss, pool=self.pool)
                fingerprint, canonical, graph = (
                    verdict.fingerprint,
                    verdict.canonical_form,
                    _json(verdict.graph),
                )
            cid = self.archive.add(
                0,
                "baseline",
                Status.TRAINING,
                name=name,
                loss=loss,
                code=spec.source,
                thought=f"baseline: {loss}",
                fingerprint=fingerprint,
                canonical=canonical,
                graph=graph,
            )
            self._submit(self.archive.get(cid))

    def _resume_interrupted(self) -> None:
        for candidate in self.archive.by_status(Status.TRAINING):
            if candidate.graph is None and candidate.loss is None and candidate.pipeline is None:
                log.info(
                    "candidate %d (%s) was archived without a graph: validating it again",
                    candidate.id,
                    candidate.name,
                )
                self.archive.update(
                    candidate.id, status=Status.PROPOSED
                )  # picked up with the proposed ones below
                continue
            log.info(
                "rescheduling candidate %d (%s), in flight when the run stopped", candidate.id, candidate.name
            )
            self._submit(candidate)
        for candidate in self.archive.by_status(Status.PROPOSED):
            log.info(
                "re-validating candidate %d (%s), proposed when the run stopped", candidate.id, candidate.name
            )
            proposal = Proposal(
                candidate.name,
                candidate.code,
                candidate.thought,
                tuple(candidate.parent_ids),
                candidate.expression,
            )
            self._validate_and_submit(candidate.id, candidate.proposer, proposal, candidate.repair_round)

    # ---- proposing ----------------------------------------------------------------------------------------------
    def _llm_usable(self) -> bool:
        """The LLM proposer is enabled and its budget is not spent (else it is disabled now, with the reason)."""
        if "llm" not in self.proposers or "llm" in self.bandit.disabled:
            return False
        limit, spent = self.config.llm.max_cost_usd, self.archive.llm_spend()["cost_usd"]
        if limit is not None and spent >= limit:
            self._disable("llm", f"the LLM budget of ${limit:.4f} is spent (${spent:.4f})")
            return False
        return True

    def _disable(self, arm: str, reason: str) -> None:
        self.bandit.disable(arm)
        disabled = self.archive.note(DISABLED_PROPOSERS) or {}
        self.archive.set_note(DISABLED_PROPOSERS, {**disabled, arm: reason})
        self.progress.disabled[arm] = reason
        self.progress.event(f"the {arm} proposer is disabled: {reason}")

    def _propose_and_submit(self, generation: int) -> None:
        self._llm_usable()
        arm = self.bandit.choose()
        if arm is None:
            off = "; ".join(f"{a}: {why.splitlines()[0]}" for a, why in self.progress.disabled.items())
            self.proposing_ended = (
                f"proposing ended: no proposer is left ({off}); the candidates in flight finish"
            )
            self.archive.set_note(PROPOSING_ENDED, self.proposing_ended)
            self.progress.event(self.proposing_ended)
            return
        self.progress.event(f"generation {generation}: asking the {arm} proposer")
        started = time.monotonic()
        try:
            proposal = self.proposers[arm].propose(self.archive, generation)
        except ProposerUnavailable as err:
            self._disable(arm, str(err))
            return
        usage = proposal.usage
        if isinstance(proposal, Unparseable):
            cid = self.archive.add(
                generation,
                arm,
                Status.UNPARSEABLE,
                reason=proposal.reason,
                metrics={"raw_reply": proposal.raw[:4000], "llm_faults": list(usage.faults)},
                llm_tokens_in=usage.tokens_in,
                llm_tokens_out=usage.tokens_out,
                llm_cost=usage.cost_usd,
                timings={"propose_s": time.monotonic() - started},
            )
            self.bandit.update(arm, 0.0)
            self.progress.event(f"{arm}: unparseable ({proposal.reason})")
            self._finalized(cid)
            return
        cid = self.archive.add(
            generation,
            arm,
            Status.PROPOSED,
            name=self._unused_name(proposal.name),
            thought=proposal.thought,
            code=proposal.code,
            parent_ids=list(proposal.parent_ids),
            expression=proposal.expression,
            llm_tokens_in=usage.tokens_in,
            metrics={"llm_faults": list(usage.faults)} if usage.faults else {},
            llm_tokens_out=usage.tokens_out,
            llm_cost=usage.cost_usd,
            timings={"propose_s": time.monotonic() - started},
        )
        self._validate_and_submit(cid, arm, proposal, 0)

    def _unused_name(self, name: str) -> str:
        """The proposal's name, suffixed when an archived candidate has it (an LLM calling its loss "dpo" must not
        read as the baseline in the leaderboard or a confirmation)."""
        taken = {c.name for c in self.archive.all()}
        if name not in taken:
            return name
        return next(f"{name}_{n}" for n in range(2, len(taken) + 3) if f"{name}_{n}" not in taken)

    def _validate_and_submit(self, cid: int, arm: str, proposal: Proposal, repair_round: int) -> None:
        best_before = max((c.fitness for c in self.archive.top(1)), default=None)
        verdict = validate_source(proposal.code, pool=self.pool)
        while not verdict.valid and repair_round < self.config.proposers.repair_rounds:
            if arm == "llm" and not self._llm_usable():
                break
            repair_round += 1
            self.progress.event(f"candidate {cid}: {verdict.stage} failure, repair round {repair_round}")
            try:
                fixed = self.proposers[arm].repair(proposal, f"[{verdict.stage}] {verdict.error}")
            except ProposerUnavailable as err:
                self._disable(arm, str(err))
                break
            current = self.archive.get(cid)
            spent = {
                "llm_tokens_in": current.llm_tokens_in + fixed.usage.tokens_in,
                "llm_tokens_out": current.llm_tokens_out + fixed.usage.tokens_out,
                "llm_cost": current.llm_cost + fixed.usage.cost_usd,
            }
            if isinstance(fixed, Unparseable):
                self.archive.update(cid, repair_round=repair_round, **spent)
                verdict = ValidationResult(
                    False, verdict.stage, f"{verdict.error}\n(repair: {fixed.reason})", None, None, 0.0
                )
                break
            proposal = fixed
            bred = (  # a symbolic repair is a new child: its expression and parents replace the old ones
                {"expression": fixed.expression, "parent_ids": list(fixed.parent_ids)}
                if fixed.expression is not None
                else {}
            )
            self.archive.update(
                cid, code=fixed.code, thought=fixed.thought, repair_round=repair_round, **spent, **bred
            )
            verdict = validate_source(proposal.code, pool=self.pool)
        if not verdict.valid:
            self.archive.update(cid, status=Status.INVALID, reason=f"[{verdict.stage}] {verdict.error}")
            self.bandit.update(arm, 0.0)
            self.progress.event(f"candidate {cid}: invalid ({verdict.stage})")
            self._finalized(cid)
            return
        original = self.archive.original_with(verdict.fingerprint, verdict.canonical_form)
        match = (  # the same fingerprint or canonical form, else the same per-pair gradient weights up to scale
            BehaviourMatch(original.id, f"behaves like candidate {original.id} ({original.name})")
            if original is not None
            else self.cascade.gradient_duplicate(cid, _json(verdict.graph))
        )
        if match is not None:
            self.archive.update(
                cid,
                status=Status.DUPLICATE,
                duplicate_of=match.original_id,
                fingerprint=verdict.fingerprint,
                canonical=verdict.canonical_form,
                reason=match.reason,
                graph=_json(verdict.graph),
            )
            self.bandit.update(arm, 0.0)
            self.progress.event(f"candidate {cid}: duplicate of {match.original_id}: {match.reason}")
            self._finalized(cid)
            return
        self.archive.update(
            cid,
            status=Status.TRAINING,
            fingerprint=verdict.fingerprint,
            canonical=verdict.canonical_form,
            best_before=best_before,
            graph=_json(verdict.graph),
        )
        self._submit(self.archive.get(cid))


def _json(graph: dict | None) -> str | None:
    return None if graph is None else json.dumps(graph)
