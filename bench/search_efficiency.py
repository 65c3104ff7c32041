"""How much training the search wastes, measured on a real run.

    python bench/search_efficiency.py               # runs `python -m evo.launch` (the embedded default) first
    python bench/search_efficiency.py RUN_DIR       # measures a finished run

Reports proposals made, the share rejected before training (invalid + duplicate + unparseable), trainer seconds
spent on candidates later found invalid or duplicate (target 0: the sandbox and the novelty filter run first),
candidates evaluated per hour, and the trainer seconds a train-everything loop (DiscoPOP's) would have spent on
the rejected proposals, estimated at the run's mean training time. Figures go to bench/results/search_efficiency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from evo.archive import Archive

REJECTED = ("invalid", "duplicate", "unparseable")


def measure(run_dir: Path, wall_s: float | None) -> dict:
    archive = Archive(run_dir / "archive.sqlite")
    rows = archive.all()
    archive.close()
    proposals = [c for c in rows if c.generation > 0]
    rejected = [c for c in proposals if c.status in REJECTED]
    evaluated = [c for c in rows if c.status == "done"]
    train_s = [c.timings.get("train_s", 0.0) for c in evaluated]
    wasted = sum(c.timings.get("train_s", 0.0) for c in rows if c.status in ("invalid", "duplicate"))
    started = min(c.created_at for c in rows)
    finished = max(c.updated_at for c in rows)
    span_h = (wall_s if wall_s is not None else finished - started) / 3600
    mean_train = statistics.mean(train_s) if train_s else 0.0
    return {
        "run_dir": str(run_dir),
        "proposals": len(proposals),
        "status_counts": {s: sum(1 for c in rows if c.status == s) for s in sorted({c.status for c in rows})},
        "rejected_before_training": len(rejected),
        "rejected_share": len(rejected) / len(proposals) if proposals else 0.0,
        "trainer_s_on_invalid_or_duplicate": wasted,
        "candidates_evaluated": len(evaluated),
        "evaluated_per_hour": len(evaluated) / span_h if span_h else 0.0,
        "mean_train_s": mean_train,
        "train_everything_would_spend_extra_s": mean_train
        * sum(1 for c in rejected if c.status != "unparseable"),
        "wall_s": wall_s if wall_s is not None else finished - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a finished run (default: run the embedded default first)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "search_efficiency.json"))
    args = parser.parse_args()
    wall_s = None
    run_dir = Path(args.run_dir) if args.run_dir else Path(f"runs/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    if not args.run_dir:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "evo.launch", "--run-dir", str(run_dir)], check=True)
        wall_s = time.monotonic() - started
    figures = measure(run_dir, wall_s)
    print(
        f"{figures['proposals']} proposals, {figures['rejected_share']:.0%} rejected before training; "
        f"trainer seconds on invalid/duplicate candidates: {figures['trainer_s_on_invalid_or_duplicate']:.0f} "
        f"(target 0); {figures['evaluated_per_hour']:.1f} candidates evaluated per hour; a train-everything loop "
        f"would have spent {figures['train_everything_would_spend_extra_s']:.0f}s more"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
