"""wandb logging in offline mode: drive ``WandbTracker`` over a small archive as the loop would, then read the
run's local files (the ``.wandb`` transaction log and the table JSON under ``files/media/table``)."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

from evo.archive import Archive
from evo.config import load_config
from evo.tracking import TABLE_COLUMNS, WandbTracker, train_key

CODE = (
    "def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
    "    x = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)\n"
    "    return torch.relu({margin} - beta * x)\n"
)
LOSSES = {1: [0.69, 0.52, 0.41], 2: [1.0, 0.6, 0.3, 0.2], 5: [0.9, 0.8], 7: [0.7, 0.1]}


# ---- the .wandb file: a LevelDB-style log of protobuf ``Record``s ---------------------------------------------
def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "unknown .wandb file format"
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _items(items) -> dict:
    return {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items}


@dataclass
class LocalRun:
    folder: Path
    records: list

    def of(self, kind: str) -> list:
        return [getattr(r, kind) for r in self.records if r.WhichOneof("record_type") == kind]

    @property
    def history(self) -> list[dict]:
        return [_items(h.item) for h in self.of("history")]

    @property
    def summary(self) -> dict:
        out: dict = {}
        for summary in self.of("summary"):
            out.update(_items(summary.update))
        return out

    def series(self, x: str, y: str) -> list[tuple]:
        return [(row[x], row[y]) for row in self.history if x in row and y in row]

    def table(self, key: str) -> dict:
        (path,) = self.folder.glob(f"files/media/table/{key}_*.table.json")
        return json.loads(path.read_text())


def local_runs(run_dir: Path, timeout_s: float = 60) -> list[LocalRun]:
    """The offline runs of ``run_dir``, read once wandb's writer has flushed each (its ``exit`` record is there):
    ``finish()`` can return before the last records reach the file."""
    deadline = time.monotonic() + timeout_s
    while True:
        folders = sorted((run_dir / "wandb").glob("offline-run-*"))
        try:
            runs = [LocalRun(f, read_records(next(f.glob("run-*.wandb")))) for f in folders]
        except (DecodeError, StopIteration):  # a record half-written, a file not created yet
            runs = []
        if (runs and all(run.of("exit") for run in runs)) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


# ---- one search in two sessions: the second resumes it and is interrupted ------------------------------------
@pytest.fixture(scope="module")
def search(tmp_path_factory) -> tuple[Path, Archive]:
    run_dir = tmp_path_factory.mktemp("search")
    home = tmp_path_factory.mktemp("wandb-home")
    config = load_config(preset="tiny")
    archive = Archive(run_dir / "archive.sqlite")

    def result(cid: int, status: str, **values) -> None:
        metrics = {"losses": LOSSES[cid]} if cid in LOSSES else {}
        archive.update(
            cid,
            status=status,
            metrics=metrics,
            timings={"train_s": 10.0 + cid, "total_s": 12.0 + cid},
            **values,
        )

    with pytest.MonkeyPatch.context() as env:
        for name in ("DATA", "CACHE", "CONFIG"):
            env.setenv(f"WANDB_{name}_DIR", str(home / name.lower()))
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_SILENT", "true")
        env.delenv("WANDB_PROJECT", raising=False)
        dpo = archive.add(0, "baseline", "training", name="dpo", loss="sigmoid", code=CODE.format(margin=1))
        result(dpo, "done", fitness=0.5, stderr=0.05, n=40)  # finished before the tracker started: replayed
        with WandbTracker(config, run_dir, archive) as tracker:
            hinge = archive.add(
                1,
                "llm",
                "training",
                name="hinge/wide",
                code=CODE.format(margin=2),
                llm_cost=0.01,
                llm_tokens_in=900,
                llm_tokens_out=120,
            )
            stale = archive.get(hinge)
            result(hinge, "done", fitness=0.7, stderr=0.04, n=40)
            tracker.on_result(stale)  # the tracker re-reads the row
            bad = archive.add(
                1,
                "llm",
                "invalid",
                name="upside_down",
                code=CODE.format(margin=0),
                reason="[direction] the gradient lowers the chosen log-ratio",
                llm_cost=0.02,
            )
            tracker.on_result(archive.get(bad))
            late = archive.add(2, "symbolic", "training", name="late", code=CODE.format(margin=3))
            tracker.on_result(archive.get(late))  # not final: ignored
            low = archive.add(2, "symbolic", "training", name="low", code=CODE.format(margin=4))
            result(low, "done", fitness=0.6, stderr=0.05, n=40)
            tracker.on_result(archive.get(low))
            tracker.on_result(archive.get(low))  # twice: logged once
            copy = archive.add(
                2,
                "symbolic",
                "duplicate",
                name="copy",
                code=CODE.format(margin=2),
                duplicate_of=2,
                reason="behaves like candidate 2",
            )
            tracker.on_result(archive.get(copy))
            result(late, "failed", reason="training diverged: loss is nan")  # never reported: logged on exit
        best = archive.add(3, "llm", "training", name="best", code=CODE.format(margin=5))
        result(best, "done", fitness=0.9, stderr=0.03, n=40)  # finished while no tracker ran (a crash)
        with pytest.raises(KeyboardInterrupt), WandbTracker(config, run_dir, archive):
            raise KeyboardInterrupt  # Ctrl-C during the resumed session
    yield run_dir, archive
    archive.close()


def test_a_search_logs_one_offline_run_inside_its_folder(search):
    run_dir, _ = search
    first, second = local_runs(run_dir)
    ids = {r.folder.name.rsplit("-", 1)[1] for r in (first, second)}
    assert len(ids) == 1, "the resumed session continues the same wandb run"
    (run,) = first.of("run")
    assert run.project == "evopo" and run.display_name == run_dir.name
    assert _items(run.config.update)["training"]["model"] == "tiny"
    assert [e.exit_code for e in first.of("exit")] == [0]
    assert [e.exit_code for e in second.of("exit")] == [1]


def test_best_so_far_curve_and_per_candidate_points(search):
    run_dir, _ = search
    first, second = local_runs(run_dir)
    # logged in this order: the replayed baseline, the four reported results, the unreported failure on exit
    assert first.series("search/index", "search/candidate_id") == [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 5),
        (5, 6),
        (6, 4),
    ]
    assert first.series("search/index", "search/best_fitness") == [
        (i, 0.7 if i > 1 else 0.5) for i in range(1, 7)
    ]
    assert first.series("search/index", "search/fitness") == [(1, 0.5), (2, 0.7), (4, 0.6)]
    assert first.series("search/index", "search/generation") == [
        (1, 0),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
    ]
    assert first.series("search/index", "search/llm_cost")[-1] == (6, pytest.approx(0.03))
    assert first.series("search/index", "status/done")[-1] == (6, 3)
    # the resumed session logs only the candidate that finished in between, and continues the count
    assert second.series("search/index", "search/candidate_id") == [(7, 7)]
    assert second.series("search/index", "search/best_fitness") == [(7, 0.9)]


def test_training_curves_of_each_candidate(search):
    run_dir, archive = search
    first, second = local_runs(run_dir)
    for cid in (1, 2, 5):
        key = train_key(archive.get(cid))
        assert first.series("train/step", key) == list(enumerate(LOSSES[cid], start=1)), key
    assert train_key(archive.get(2)) == "train/2-hinge_wide/loss"
    keys = {k for row in second.history for k in row if k.startswith("train/") and k != "train/step"}
    assert keys == {train_key(archive.get(7))}
    curves = first.table("training_curves_table")
    assert len(curves["data"]) == sum(len(LOSSES[c]) for c in (1, 2, 5))


def test_candidates_table_and_summary(search):
    run_dir, archive = search
    first, second = local_runs(run_dir)
    table = first.table("candidates")
    assert table["columns"] == list(TABLE_COLUMNS)
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    hinge = rows[2]
    assert (hinge["name"], hinge["status"], hinge["fitness"], hinge["stderr"]) == (
        "hinge/wide",
        "done",
        0.7,
        0.04,
    )
    assert hinge["code"] == archive.get(2).code and hinge["train_s"] == 12.0 and hinge["total_s"] == 14.0
    assert (hinge["llm_cost"], hinge["llm_tokens_in"], hinge["llm_tokens_out"]) == (0.01, 900, 120)
    assert hinge["delta_vs_dpo"] == pytest.approx(0.2)
    assert rows[3]["status"] == "invalid" and "the gradient lowers" in rows[3]["reason"]
    assert rows[4]["status"] == "failed" and rows[4]["reason"] == "training diverged: loss is nan"
    assert rows[6]["status"] == "duplicate" and rows[6]["fitness"] is None
    generations = first.table("generations_table")
    assert [(r[0], r[2]) for r in generations["data"]] == [(0, 0.5), (1, 0.7), (2, 0.7)]
    summary = first.summary
    assert (summary["best/name"], summary["best/fitness"], summary["candidates_total"]) == (
        "hinge/wide",
        0.7,
        6,
    )
    assert (summary["status/done"], summary["status/failed"], summary["llm/cost_usd"]) == (
        3,
        1,
        pytest.approx(0.03),
    )
    assert len(second.table("candidates")["data"]) == 7 and second.summary["best/name"] == "best"
