"""The run's archive: one SQLite file (WAL) holding every candidate and what happened to it, and facts about the run.

Only the driver writes. A candidate's ``status`` is an ``evo.status.Status``; every status carries a reason, so
the next prompt can show the LLM what went wrong. A validated candidate's ``graph`` is the JSON of its traced graph
(``sandbox.graph``): the trainer, retrain and the report rebuild its loss from that alone, never from ``code``.
``notes`` holds what the run should show beside its results: a disabled proposer, why proposing ended, why the
circuit breaker stopped the run, ``sandbox_isolation_missing`` (the isolation properties the sandbox children lacked
in any session of the run). ``rung_results`` keeps every candidate's result at every fidelity rung (``evo.rungs``)
with the promotion decision and its reason; the candidate row carries its highest rung's. An archive written before
a column or table existed gets it on open."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evo.status import TRAINED, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    proposer TEXT NOT NULL,
    parent_ids TEXT NOT NULL DEFAULT '[]',
    name TEXT NOT NULL DEFAULT '',
    thought TEXT NOT NULL DEFAULT '',
    code TEXT NOT NULL DEFAULT '',
    loss TEXT,
    expression TEXT,
    fingerprint TEXT,
    canonical TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    duplicate_of INTEGER,
    fitness REAL,
    stderr REAL,
    n INTEGER,
    pipeline TEXT,
    best_before REAL,
    graph TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    repair_round INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    llm_tokens_in INTEGER NOT NULL DEFAULT 0,
    llm_tokens_out INTEGER NOT NULL DEFAULT 0,
    llm_cost REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS by_status ON candidates(status);
CREATE INDEX IF NOT EXISTS by_fingerprint ON candidates(fingerprint);
CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rung_results (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    rung INTEGER NOT NULL,
    fitness REAL NOT NULL,
    stderr REAL,
    n INTEGER,
    per_item TEXT NOT NULL DEFAULT '{}',
    seconds REAL,
    decision TEXT,
    reason TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (candidate_id, rung)
);
"""
# Columns added after the first archives were written: (name, type, where older archives kept the value, if
# anywhere).
_ADDED_COLUMNS = (
    ("pipeline", "TEXT", "$.pipeline"),
    ("best_before", "REAL", "$.best_before"),
    ("graph", "TEXT", None),
    ("rung", "INTEGER", None),
)
ISOLATION_MISSING = "sandbox_isolation_missing"

_JSON = ("parent_ids", "metrics", "timings")


@dataclass(frozen=True)
class Candidate:
    id: int
    generation: int
    proposer: str
    status: Status
    parent_ids: list = field(default_factory=list)
    name: str = ""
    thought: str = ""
    code: str = ""
    loss: str | None = None  # registry name for baselines, None for proposed code
    expression: str | None = None  # sympy srepr when the proposer built it symbolically
    fingerprint: str | None = None
    canonical: str | None = None
    reason: str | None = None
    duplicate_of: int | None = None
    fitness: float | None = None
    stderr: float | None = None
    n: int | None = None
    pipeline: str | None = None  # a fixed method's whole procedure (baselines: spin, spa, aepo_dpo)
    best_before: float | None = None  # the best fitness in the archive when it was validated (bandit reward)
    graph: str | None = None  # JSON of the traced graph (sandbox.graph), stored when the candidate validated
    rung: int | None = (
        None  # the highest fidelity rung with a result (evo.rungs): fitness, stderr and n are its
    )
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    repair_round: int = 0
    attempts: int = 0
    llm_tokens_in: int = 0
    llm_tokens_out: int = 0
    llm_cost: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0


_COLUMNS = [f.name for f in fields(Candidate)]


@dataclass(frozen=True)
class RungResult:
    """A candidate's result at one fidelity rung, and what the search decided from it (None: not yet):
    ``promoted`` to the next rung, ``stopped`` there, ``reference`` (a baseline, scored at every rung),
    ``duplicate`` (behaves like an earlier candidate) or ``final`` (the last rung)."""

    candidate_id: int
    rung: int
    fitness: float
    stderr: float | None
    n: int | None
    per_item: dict
    seconds: float | None = None
    decision: str | None = None
    reason: str | None = None
    created_at: float = 0.0


def open_existing(path: Path, schema: str) -> sqlite3.Connection:
    """The run's existing archive file (WAL) with ``schema``'s tables: the retrain and confirmation stores' opener."""
    if not path.exists():
        raise FileNotFoundError(f"no archive at {path}")
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


class Archive:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Give an older archive the columns it lacks, moving the values it kept in ``metrics`` into them."""
        if {name for name, _, _ in _ADDED_COLUMNS} <= self._columns(self._db):
            return
        with (
            self._transaction() as db
        ):  # checked again under the write lock: another process may have added them
            present = self._columns(db)
            for name, kind, metrics_path in _ADDED_COLUMNS:
                if name in present:
                    continue
                db.execute(f"ALTER TABLE candidates ADD COLUMN {name} {kind}")
                if metrics_path is None:
                    continue
                db.execute(
                    f"UPDATE candidates SET {name} = json_extract(metrics, ?), metrics = json_remove(metrics, ?) "
                    "WHERE json_type(metrics, ?) IS NOT NULL",
                    (metrics_path, metrics_path, metrics_path),
                )

    @staticmethod
    def _columns(db: sqlite3.Connection) -> set[str]:
        return {row["name"] for row in db.execute("PRAGMA table_info(candidates)")}

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- writes -------------------------------------------------------------------------------------------------
    def add(self, generation: int, proposer: str, status: str = Status.PROPOSED, **values: Any) -> int:
        now = time.time()
        row = {
            "generation": generation,
            "proposer": proposer,
            "status": _status(status),
            "created_at": now,
            "updated_at": now,
        }
        row.update(values)
        for key in _JSON:
            if key in row:
                row[key] = json.dumps(row[key])
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._transaction() as db:
            cursor = db.execute(f"INSERT INTO candidates ({names}) VALUES ({marks})", list(row.values()))
        return int(cursor.lastrowid)

    def update(self, candidate_id: int, **values: Any) -> None:
        if "status" in values:
            values["status"] = _status(values["status"])
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}")
        values["updated_at"] = time.time()
        for key in _JSON:
            if key in values:
                values[key] = json.dumps(values[key])
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._transaction() as db:
            db.execute(f"UPDATE candidates SET {assignments} WHERE id = ?", [*values.values(), candidate_id])

    def add_rung_result(self, result: RungResult) -> None:
        """Keep a rung's result and make it the candidate's fitness (its highest rung so far)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO rung_results (candidate_id, rung, fitness, stderr, n, per_item, seconds, "
                "decision, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result.candidate_id,
                    result.rung,
                    result.fitness,
                    result.stderr,
                    result.n,
                    json.dumps(result.per_item),
                    result.seconds,
                    result.decision,
                    result.reason,
                    time.time(),
                ),
            )
            db.execute(
                "UPDATE candidates SET rung = ?, fitness = ?, stderr = ?, n = ?, updated_at = ? WHERE id = ? "
                "AND (rung IS NULL OR rung <= ?)",
                (
                    result.rung,
                    result.fitness,
                    result.stderr,
                    result.n,
                    time.time(),
                    result.candidate_id,
                    result.rung,
                ),
            )

    def decide_rung(self, candidate_id: int, rung: int, decision: str, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE rung_results SET decision = ?, reason = ? WHERE candidate_id = ? AND rung = ?",
                (decision, reason, candidate_id, rung),
            )

    def record_isolation_missing(self, missing: tuple[str, ...]) -> tuple[str, ...]:
        """Add the isolation properties a session's sandbox lacked to the run's record; returns the record (the
        union over every session of the run, sorted)."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM notes WHERE key = ?", (ISOLATION_MISSING,)).fetchone()
            union = sorted(set(json.loads(row["value"]) if row else []) | set(missing))
            db.execute(
                "INSERT OR REPLACE INTO notes (key, value) VALUES (?, ?)",
                (ISOLATION_MISSING, json.dumps(union)),
            )
        return tuple(union)

    # ---- reads --------------------------------------------------------------------------------------------------
    def isolation_missing(self) -> tuple[str, ...] | None:
        """The isolation properties the sandbox lacked in any session of the run: empty when it had them all, None
        when the run never recorded it (archives from before the record)."""
        recorded = self.note(ISOLATION_MISSING)
        return None if recorded is None else tuple(recorded)

    @staticmethod
    def _candidate(row: sqlite3.Row) -> Candidate:
        data = dict(row)
        for key in _JSON:
            data[key] = json.loads(data[key])
        data["status"] = Status(data["status"])
        return Candidate(**data)

    def _select(
        self, where: str = "1", params: tuple = (), order: str = "id", limit: int | None = None
    ) -> list:
        sql = f"SELECT * FROM candidates WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._candidate(r) for r in self._db.execute(sql, params).fetchall()]

    def get(self, candidate_id: int) -> Candidate:
        found = self._select("id = ?", (candidate_id,))
        if not found:
            raise KeyError(f"no candidate {candidate_id}")
        return found[0]

    def all(self) -> list[Candidate]:
        return self._select()

    def by_status(self, *statuses: Status) -> list[Candidate]:
        marks = ", ".join("?" for _ in statuses)
        return self._select(f"status IN ({marks})", statuses)

    def in_generation(self, generation: int) -> list[Candidate]:
        return self._select("generation = ?", (generation,))

    def top(self, k: int) -> list[Candidate]:
        """The ``k`` best done candidates: highest rung reached first, then fitness."""
        return self._select(
            "status = ? AND fitness IS NOT NULL",
            (Status.DONE,),
            order="COALESCE(rung, 0) DESC, fitness DESC, id",
            limit=k,
        )

    def recent(self, k: int, statuses: tuple[Status, ...] = (Status.DONE,)) -> list[Candidate]:
        marks = ", ".join("?" for _ in statuses)
        return self._select(f"status IN ({marks})", statuses, order="id DESC", limit=k)

    def failures(self, k: int) -> list[Candidate]:
        return self.recent(k, (Status.INVALID, Status.FAILED, Status.UNPARSEABLE))

    def original_with(self, fingerprint: str | None, canonical: str | None) -> Candidate | None:
        """The first trained-or-training candidate with the same behaviour fingerprint or canonical form."""
        clauses, params = [], []
        if fingerprint:
            clauses.append("fingerprint = ?")
            params.append(fingerprint)
        if canonical:
            clauses.append("canonical = ?")
            params.append(canonical)
        if not clauses:
            return None
        where = f"({' OR '.join(clauses)}) AND status IN ({', '.join('?' for _ in TRAINED)})"
        found = self._select(where, (*params, *TRAINED), limit=1)
        return found[0] if found else None

    def rung_results(self, candidate_id: int | None = None) -> list[RungResult]:
        """Every rung result (of one candidate when given), by candidate and rung."""
        where, params = ("candidate_id = ?", (candidate_id,)) if candidate_id is not None else ("1", ())
        rows = self._db.execute(
            f"SELECT * FROM rung_results WHERE {where} ORDER BY candidate_id, rung", params
        )
        return [RungResult(**{**dict(r), "per_item": json.loads(r["per_item"])}) for r in rows.fetchall()]

    # ---- run-level notes ----------------------------------------------------------------------------------------
    def set_note(self, key: str, value: Any) -> None:
        """Record (JSON) something about the run as a whole: a disabled proposer, why proposing ended, why the
        circuit breaker stopped the run; None removes it."""
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM notes WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO notes (key, value) VALUES (?, ?)", (key, json.dumps(value))
                )

    def note(self, key: str) -> Any:
        """The run-level note ``key``, or None."""
        row = self._db.execute("SELECT value FROM notes WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def status_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) AS n FROM candidates GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def llm_spend(self) -> dict[str, float]:
        row = self._db.execute(
            "SELECT COALESCE(SUM(llm_tokens_in), 0) AS tin, COALESCE(SUM(llm_tokens_out), 0) AS tout, "
            "COALESCE(SUM(llm_cost), 0) AS cost FROM candidates"
        ).fetchone()
        return {"tokens_in": int(row["tin"]), "tokens_out": int(row["tout"]), "cost_usd": float(row["cost"])}


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise ValueError(f"unknown status {value!r}; known: {', '.join(Status)}") from None
