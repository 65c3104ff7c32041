"""Weights & Biases logging of a search: one wandb run per search, its files under ``RUN_DIR/wandb``.

    python -m evo.launch --wandb            # no key or no network: logs offline, `wandb sync` uploads later

Without a W&B API key (``WANDB_API_KEY``, ``wandb login``) or with the W&B host out of reach, and ``WANDB_MODE``
unset, the run logs offline under ``RUN_DIR/wandb/offline-run-*`` and says so in one line with the ``wandb sync``
command; a wandb that cannot start at all is reported and the search runs without it. wandb never stops a search.

The launcher enters ``WandbTracker(config, run_dir, archive)``; the loop calls ``on_steps(candidate, rows)`` with the
training steps a running candidate's worker logged since the last look (its live curve,
``train/<id>-<name>/loss`` against ``train/step``) and ``on_result(candidate)`` each time a candidate reaches a final
status. Each result logs one point of the search curves against ``search/index`` (the count of finished
candidates): ``search/best_fitness`` (best so far), ``search/fitness``, ``search/generation``,
``search/candidate_id``, ``search/llm_cost`` and the cumulative ``status/<status>`` counts; and the candidate's
training curve when it was not streamed live (a pipeline baseline, a result from an earlier session). On exit: the ``candidates`` Table (one row
per candidate: name, code, fitness, stderr, status, reason, timings, LLM tokens and cost, paired delta vs DPO),
the ``generations`` Table with a best-fitness-by-generation line chart, all training curves in one chart, and
the run summary.

The project is ``WANDB_PROJECT`` or "evopo"; ``WANDB_ENTITY``, ``WANDB_MODE`` and the other wandb variables
apply as usual. A resumed search continues the same wandb run without logging a candidate twice: the run id
and the ids already logged are kept in ``RUN_DIR/wandb/evopo-tracker.json``."""

from __future__ import annotations

import functools
import json
import logging
import netrc
import os
import re
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import wandb

from evo.archive import Archive, Candidate
from evo.config import SearchConfig, to_dict
from evo.ranking import leaderboard
from evo.report import generation_stats
from evo.status import FINAL, Status

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "evopo"
STATE_FILE = "evopo-tracker.json"
TABLE_COLUMNS = (
    "id",
    "generation",
    "proposer",
    "name",
    "status",
    "reason",
    "fitness",
    "stderr",
    "n",
    "delta_vs_dpo",
    "delta_stderr",
    "propose_s",
    "train_s",
    "eval_s",
    "total_s",
    "llm_tokens_in",
    "llm_tokens_out",
    "llm_cost",
    "code",
)


def train_key(candidate: Candidate) -> str:
    """History key of a candidate's training loss: ``train/<id>-<name>/loss``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", candidate.name)[:60]
    return f"train/{candidate.id}-{name}/loss" if name else f"train/{candidate.id}/loss"


def offline_reason(timeout_s: float = 3.0) -> str | None:
    """Why wandb should log offline here (no API key, the W&B host out of reach), or None to log online."""
    base_url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host = base_url.hostname or "api.wandb.ai"
    if not (
        os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE") or _netrc_key(host)
    ):
        return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    try:
        socket.create_connection(
            (host, base_url.port or (80 if base_url.scheme == "http" else 443)), timeout_s
        ).close()
    except OSError as err:
        return f"{host} cannot be reached ({err})"
    return None


def _netrc_key(host: str) -> bool:
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return bool(netrc.netrc(path).authenticators(host))
    except (OSError, netrc.NetrcParseError):
        return False


def _never_raises(method: Callable) -> Callable:
    """A tracker method whose failure turns wandb off for the rest of the search instead of stopping it."""

    @functools.wraps(method)
    def guarded(self: WandbTracker, *args: Any) -> None:
        if self.run is None:
            return
        try:
            method(self, *args)
        except Exception as err:  # noqa: BLE001 - logging must never stop a search
            self.notify(f"wandb stopped logging ({type(err).__name__}: {err}); the search goes on without it")
            self.run = None

    return guarded


class WandbTracker:
    """Context manager around the search's wandb run."""

    def __init__(
        self,
        config: SearchConfig,
        run_dir: Path,
        archive: Archive,
        project: str | None = None,
        notify: Callable[[str], None] = log.warning,
    ) -> None:
        self.config = config
        self.notify = notify
        self.run_dir = Path(run_dir)
        self.archive = archive
        self.project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        self.state_path = self.run_dir / "wandb" / STATE_FILE
        self.run: wandb.Run | None = None
        self.logged: list[int] = []
        self.streamed: set[int] = set()  # candidates whose curve was logged live, step by step
        self.best: float | None = None
        self.counts: Counter[str] = Counter()

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def _init(self, state: dict, mode: str | None) -> wandb.Run:
        return wandb.init(
            project=self.project,
            dir=str(self.run_dir),
            name=self.run_dir.resolve().name,
            job_type="search",
            id=state.get("run_id"),
            resume="allow",
            tags=[self.config.preset],
            mode=mode,
            config={**to_dict(self.config), "run_dir": str(self.run_dir.resolve())},
            settings=wandb.Settings(
                console="off"
            ),  # the search logs to search.log; a live terminal display would spam
        )

    def _start(self, state: dict) -> None:
        """Online when wandb can be, else offline (with the one line that says why and how to upload later), else
        not at all (said too)."""
        mode = os.environ.get("WANDB_MODE") or None
        reason = None if mode else offline_reason()
        try:
            self.run = self._init(state, "offline" if reason else mode)
        except Exception as err:  # noqa: BLE001 - wandb must never stop a search
            if reason or mode in ("offline", "disabled"):
                self.notify(
                    f"wandb could not start ({type(err).__name__}: {err}); the search runs without it"
                )
                return
            reason = f"wandb could not start online: {type(err).__name__}: {str(err)[:200]}"
            try:
                self.run = self._init(state, "offline")
            except Exception as again:  # noqa: BLE001
                self.notify(
                    f"wandb could not start ({type(again).__name__}: {again}); the search runs without it"
                )
                return
        if reason:
            sync_dir = Path(self.run.settings.sync_dir)
            self.notify(
                f"wandb: {reason}, so it logs offline to {sync_dir}; upload later with:  wandb sync {sync_dir}"
            )

    def __enter__(self) -> WandbTracker:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self._start(state)
        if self.run is None:
            return self
        self._define_metrics_and_catch_up(state)
        return self

    @_never_raises
    def _define_metrics_and_catch_up(self, state: dict) -> None:
        assert self.run is not None
        self.run.define_metric("search/index")
        self.run.define_metric("search/*", step_metric="search/index")
        self.run.define_metric("status/*", step_metric="search/index")
        self.run.define_metric("search/best_fitness", step_metric="search/index", summary="max")
        self.run.define_metric("train/step")
        self.run.define_metric("train/*", step_metric="train/step")
        already = set(state.get("logged", []))
        for (
            candidate
        ) in self.archive.all():  # what earlier sessions of a resumed search logged, or should have
            if candidate.id in already:
                self._count(candidate)
                self.logged.append(candidate.id)
            elif candidate.status in FINAL:
                self.on_result(candidate)
        self._save_state()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc_type is None)

    @_never_raises
    def _finish(self, ok: bool) -> None:
        assert self.run is not None
        for candidate in self.archive.by_status(*FINAL):  # results the loop did not report
            if candidate.id not in self.logged:
                self.on_result(candidate)
        candidates = self.archive.all()
        final: dict = {"candidates": self._candidates_table(candidates)}
        if candidates:
            final["generations"] = self._generations_chart(candidates)
        if any(c.metrics.get("losses") for c in candidates):
            final["training_curves"] = self._training_chart(candidates)
        self.run.log(final)
        self._summarize(candidates)
        self.run.finish(exit_code=0 if ok else 1)
        self.run = None

    # ---- per candidate ------------------------------------------------------------------------------------------
    @_never_raises
    def on_steps(self, candidate: Candidate, rows: list[dict]) -> None:
        """Log the training steps a running candidate's worker wrote since the last call (``trainer.step_log``)."""
        assert self.run is not None
        key = train_key(candidate)
        for row in rows:
            self.run.log({"train/step": row["step"], key: row["loss"]})
        self.streamed.add(candidate.id)

    @_never_raises
    def on_result(self, candidate: Candidate) -> None:
        """Log a candidate that reached a final status (done, failed, invalid, duplicate, unparseable).

        The row is re-read from the archive, so a stale ``Candidate`` object is fine; a candidate already logged,
        or not final yet, is ignored."""
        assert self.run is not None
        current = self.archive.get(candidate.id)
        if current.status not in FINAL or current.id in self.logged:
            return
        self._count(current)
        self.logged.append(current.id)
        point: dict[str, float | int] = {
            "search/index": len(self.logged),
            "search/candidate_id": current.id,
            "search/generation": current.generation,
            "search/llm_cost": self.archive.llm_spend()["cost_usd"],
            **{f"status/{status}": n for status, n in self.counts.items()},
        }
        if current.status == Status.DONE and current.fitness is not None:
            point["search/fitness"] = current.fitness
        if self.best is not None:
            point["search/best_fitness"] = self.best
        self.run.log(point)
        if current.id not in self.streamed:
            key = train_key(current)
            for step, value in enumerate(current.metrics.get("losses") or [], start=1):
                self.run.log({"train/step": step, key: value})
        self._save_state()

    def _count(self, candidate: Candidate) -> None:
        self.counts[candidate.status] += 1
        if candidate.status == Status.DONE and candidate.fitness is not None:
            self.best = candidate.fitness if self.best is None else max(self.best, candidate.fitness)

    def _save_state(self) -> None:
        assert self.run is not None
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"run_id": self.run.id, "logged": self.logged}))
        temporary.replace(self.state_path)

    # ---- on exit ------------------------------------------------------------------------------------------------
    def _candidates_table(self, candidates: list[Candidate]) -> wandb.Table:
        rows, _ = leaderboard(self.archive)
        deltas = {r.id: (r.delta_vs_dpo, r.delta_stderr) for r in rows}
        table = wandb.Table(columns=list(TABLE_COLUMNS), allow_mixed_types=True)
        for c in candidates:
            delta, delta_se = deltas.get(c.id, (None, None))
            timings = [c.timings.get(k) for k in ("propose_s", "train_s", "eval_s", "total_s")]
            table.add_data(
                c.id,
                c.generation,
                c.proposer,
                c.name,
                c.status,
                c.reason,
                c.fitness,
                c.stderr,
                c.n,
                delta,
                delta_se,
                *timings,
                c.llm_tokens_in,
                c.llm_tokens_out,
                c.llm_cost,
                c.code,
            )
        return table

    @staticmethod
    def _generations_chart(candidates: list[Candidate]) -> wandb.plot.CustomChart:
        table = wandb.Table(
            columns=["generation", "best_of_generation", "best_so_far", "trained", "candidates"],
            allow_mixed_types=True,
        )
        for s in generation_stats(candidates):
            table.add_data(s.generation, s.best, s.best_so_far, s.done, s.candidates)
        return wandb.plot.line(table, "generation", "best_so_far", title="best fitness by generation")

    @staticmethod
    def _training_chart(candidates: list[Candidate]) -> wandb.plot.CustomChart:
        curves = [c for c in candidates if c.metrics.get("losses")]
        return wandb.plot.line_series(
            xs=[list(range(1, len(c.metrics["losses"]) + 1)) for c in curves],
            ys=[c.metrics["losses"] for c in curves],
            keys=[f"#{c.id} {c.name}" for c in curves],
            title="training loss",
            xname="step",
        )

    def _summarize(self, candidates: list[Candidate]) -> None:
        assert self.run is not None
        top = self.archive.top(1)
        spend = self.archive.llm_spend()
        self.run.summary.update(
            {
                "candidates_total": len(candidates),
                **{f"status/{status}": n for status, n in self.archive.status_counts().items()},
                "llm/tokens_in": spend["tokens_in"],
                "llm/tokens_out": spend["tokens_out"],
                "llm/cost_usd": spend["cost_usd"],
            }
        )
        if top:
            self.run.summary.update(
                {
                    "best/fitness": top[0].fitness,
                    "best/stderr": top[0].stderr,
                    "best/id": top[0].id,
                    "best/name": top[0].name,
                    "best/code": top[0].code,
                }
            )
