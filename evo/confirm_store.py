"""Confirmation results, kept in the run's archive (``archive.sqlite``) next to the search's candidates.

``confirmations``: one row per (candidate, fresh seed) retraining, DPO's included: status, reason, the
confirmation fitness (score, stderr, n) and its per-item results, the training pairs it used, timings. A done row is
never trained again, so a killed confirmation resumes where it stopped; a failed one is tried again (and replaced).
``confirmation_summary``: one row per confirmed candidate: the paired difference to DPO over seeds x items with its
standard error, the one-sided p-value, the Holm-adjusted p over the candidates confirmed together, and
``confirmed`` (p_holm < 0.05 and a positive delta). The search driver never writes these tables."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from evo.archive import open_existing
from evo.status import Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    fitness REAL,
    stderr REAL,
    n INTEGER,
    per_item TEXT NOT NULL DEFAULT '{}',
    train_path TEXT NOT NULL DEFAULT '',
    timings TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (candidate_id, seed)
);
CREATE TABLE IF NOT EXISTS confirmation_summary (
    candidate_id INTEGER PRIMARY KEY REFERENCES candidates(id),
    reference_id INTEGER NOT NULL,
    delta REAL,
    stderr REAL,
    p_value REAL,
    p_holm REAL,
    confirmed INTEGER NOT NULL,
    n_seeds INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    family_size INTEGER NOT NULL,
    reason TEXT,
    updated_at REAL NOT NULL
);
"""
ALPHA = 0.05  # the family-wise error rate a confirmation claims


@dataclass(frozen=True)
class SeedRun:
    """One retraining of one candidate with one fresh seed, scored on the confirmation split."""

    candidate_id: int
    seed: int
    status: Status  # DONE | FAILED
    reason: str | None = None
    fitness: float | None = None
    stderr: float | None = None
    n: int | None = None
    per_item: dict = field(default_factory=dict)
    train_path: str = ""
    timings: dict = field(default_factory=dict)
    id: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Confirmation:
    """A candidate's confirmed difference to DPO (``reference_id``); delta, stderr and p are None when a seed
    failed (``reason``), and then p_holm is 1."""

    candidate_id: int
    reference_id: int
    delta: float | None
    stderr: float | None
    p_value: float | None
    p_holm: float
    n_seeds: int
    n_items: int
    family_size: int
    reason: str | None = None
    updated_at: float = 0.0

    @property
    def confirmed(self) -> bool:
        return self.delta is not None and self.delta > 0 and self.p_holm < ALPHA


_RUN_COLUMNS = [f.name for f in fields(SeedRun)]
_SUMMARY_COLUMNS = [f.name for f in fields(Confirmation)]


class ConfirmStore:
    def __init__(self, archive_path: str | Path) -> None:
        self.path = Path(archive_path)
        self._db = open_existing(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, run: SeedRun) -> None:
        """Record a seed's result, replacing an earlier (failed) one of the same candidate and seed."""
        if run.status not in (Status.DONE, Status.FAILED):
            raise ValueError(f"a confirmation run is done or failed, not {run.status!r}")
        row = {k: getattr(run, k) for k in _RUN_COLUMNS if k != "id"}
        row["created_at"] = time.time()
        for key in ("per_item", "timings"):
            row[key] = json.dumps(row[key])
        names, marks = ", ".join(row), ", ".join("?" for _ in row)
        self._db.execute(
            f"INSERT OR REPLACE INTO confirmations ({names}) VALUES ({marks})", list(row.values())
        )

    def runs(self, candidate_id: int | None = None) -> list[SeedRun]:
        where, params = ("candidate_id = ?", (candidate_id,)) if candidate_id is not None else ("1", ())
        out = []
        for row in self._db.execute(
            f"SELECT * FROM confirmations WHERE {where} ORDER BY id", params
        ).fetchall():
            data = dict(row)
            data["per_item"], data["timings"] = json.loads(data["per_item"]), json.loads(data["timings"])
            data["status"] = Status(data["status"])
            out.append(SeedRun(**data))
        return out

    def done(self, candidate_id: int, seed: int) -> SeedRun | None:
        found = [r for r in self.runs(candidate_id) if r.seed == seed and r.status == Status.DONE]
        return found[0] if found else None

    def set_summaries(self, summaries: list[Confirmation]) -> None:
        """Replace the summary with one family of candidates confirmed together (Holm's family)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM confirmation_summary")
            for summary in summaries:
                row = {k: getattr(summary, k) for k in _SUMMARY_COLUMNS}
                row["updated_at"] = time.time()
                row["confirmed"] = int(summary.confirmed)
                names, marks = ", ".join(row), ", ".join("?" for _ in row)
                self._db.execute(
                    f"INSERT INTO confirmation_summary ({names}) VALUES ({marks})", list(row.values())
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def summaries(self) -> dict[int, Confirmation]:
        rows = self._db.execute("SELECT * FROM confirmation_summary ORDER BY candidate_id").fetchall()
        out = {}
        for row in rows:
            data = {k: row[k] for k in _SUMMARY_COLUMNS}
            out[data["candidate_id"]] = Confirmation(**data)
        return out


def read_summaries(archive_path: str | Path) -> dict[int, Confirmation]:
    """The confirmation summary of a run's archive (empty when nothing was confirmed)."""
    store = ConfirmStore(archive_path)
    try:
        return store.summaries()
    finally:
        store.close()
