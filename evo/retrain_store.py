"""Full-scale retraining results, kept in the run's archive (``archive.sqlite``, table ``retrains``) next to the
search-scale fitness in ``candidates``.

One row per retraining of one candidate with one recipe: the recipe's fitness (score, stderr, n), every other
evaluator the recipe asked for, where the checkpoint is, how training was launched, and the timings. Failed
retrainings are rows too (``status = 'failed'`` with the reason). The search driver never writes this table, so
a retraining may run while the search is still going (SQLite WAL, short write transactions)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from evo.archive import open_existing
from evo.status import Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retrains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    recipe TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    fitness_kind TEXT NOT NULL DEFAULT '',
    fitness REAL,
    stderr REAL,
    n INTEGER,
    evaluations TEXT NOT NULL DEFAULT '{}',
    output_dir TEXT NOT NULL DEFAULT '',
    launch TEXT NOT NULL DEFAULT '{}',
    train TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS retrains_by_candidate ON retrains(candidate_id);
"""

_JSON = ("evaluations", "launch", "train", "timings", "config")
STATUSES = (Status.DONE, Status.FAILED)


@dataclass(frozen=True)
class RetrainRecord:
    candidate_id: int
    recipe: str  # the recipe file's stem, e.g. "zephyr-7b-gemma-full"
    status: Status  # DONE | FAILED
    reason: str | None = None
    fitness_kind: str = ""  # the recipe's fitness.kind
    fitness: float | None = None
    stderr: float | None = None
    n: int | None = None
    evaluations: dict = field(
        default_factory=dict
    )  # evaluator name -> Fitness.to_json() (retrain.evaluators)
    output_dir: str = ""
    launch: dict = field(default_factory=dict)  # evo.workers.Placement: workers, CPUs/GPUs each, DeepSpeed
    train: dict = field(default_factory=dict)  # steps, first/last loss, loss name
    timings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the resolved recipe
    id: int | None = None
    created_at: float = 0.0


_COLUMNS = [f.name for f in fields(RetrainRecord)]


class RetrainStore:
    def __init__(self, archive_path: str | Path) -> None:
        self.path = Path(archive_path)
        self._db = open_existing(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, record: RetrainRecord) -> int:
        if record.status not in STATUSES:
            raise ValueError(
                f"unknown retrain status {record.status!r}; expected one of {', '.join(STATUSES)}"
            )
        row = {k: getattr(record, k) for k in _COLUMNS if k != "id"}
        row["created_at"] = time.time()
        for key in _JSON:
            row[key] = json.dumps(row[key], default=str)
        names, marks = ", ".join(row), ", ".join("?" for _ in row)
        cursor = self._db.execute(f"INSERT INTO retrains ({names}) VALUES ({marks})", list(row.values()))
        return int(cursor.lastrowid)

    def _records(self, where: str = "1", params: tuple = ()) -> list[RetrainRecord]:
        rows = self._db.execute(f"SELECT * FROM retrains WHERE {where} ORDER BY id", params).fetchall()
        out = []
        for row in rows:
            data = dict(row)
            for key in _JSON:
                data[key] = json.loads(data[key])
            data["status"] = Status(data["status"])
            out.append(RetrainRecord(**data))
        return out

    def get(self, retrain_id: int) -> RetrainRecord:
        found = self._records("id = ?", (retrain_id,))
        if not found:
            raise KeyError(f"no retrain {retrain_id}")
        return found[0]

    def for_candidate(self, candidate_id: int) -> list[RetrainRecord]:
        return self._records("candidate_id = ?", (candidate_id,))

    def all(self) -> list[RetrainRecord]:
        return self._records()
