"""The tiny-preset search with candidate tasks that each ask Ray for one GPU (``resources.gpus_per_worker: 1``).

    python bench/gpu_search.py [--generations 2] [--population 2] [--out FILE]

Runs ``python -m evo.launch --preset tiny`` (symbolic proposer only, so no llama server) with a recipe that sets
``resources.gpus_per_worker: 1``, watches ``nvidia-smi`` for the processes that hold a GPU context, and checks that every
candidate was trained by one of them (each candidate's ``worker.pid``). Writes wall time, per-candidate timings
and the GPU evidence to ``bench/results/gpu_search.json``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

from evo.archive import Archive


class GpuProcessWatcher(threading.Thread):
    """Collects the pids of compute processes on the GPUs, polling ``nvidia-smi`` until stopped."""

    def __init__(self, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.pids: set[int] = set()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            ).stdout
            self.pids.update(int(line) for line in out.split() if line.strip().isdigit())
            self._done.wait(self.interval_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--population", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_search.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "no CUDA device: this run schedules candidate tasks on GPUs through Ray; run it on a GPU machine",
            file=sys.stderr,
        )
        return 2
    gpus = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as scratch:
        recipe = Path(scratch) / "gpu-tiny.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "proposers": {"llm": False},
                    "resources": {"num_cpus": 1, "gpus_per_worker": 1, "max_in_flight": gpus},
                }
            )
        )
        run_dir = Path(scratch) / "run"
        command = [
            sys.executable,
            "-m",
            "evo.launch",
            "--preset",
            "tiny",
            "--config",
            str(recipe),
            "--run-dir",
            str(run_dir),
            "--generations",
            str(args.generations),
            "--population",
            str(args.population),
        ]
        watcher = GpuProcessWatcher()
        watcher.start()
        started = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - started
        watcher.stop()
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
            print(f"evo.launch failed with exit code {proc.returncode}", file=sys.stderr)
            return 1
        archive = Archive(run_dir / "archive.sqlite")
        candidates = []
        for c in archive.all():
            pid_file = run_dir / "candidates" / str(c.id) / "worker.pid"
            pid = int(pid_file.read_text()) if pid_file.exists() else None
            candidates.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "status": c.status,
                    "fitness": c.fitness,
                    "reason": c.reason,
                    "train_s": c.timings.get("train_s"),
                    "eval_s": c.timings.get("eval_s"),
                    "worker_pid": pid,
                    "worker_on_gpu": pid in watcher.pids,
                }
            )
        archive.close()
    trained = [c for c in candidates if c["worker_pid"] is not None]
    ok = bool(trained) and all(c["status"] == "done" and c["worker_on_gpu"] for c in trained)
    results = {
        "device": torch.cuda.get_device_name(0),
        "gpus": gpus,
        "wall_s": wall,
        "ok": ok,
        "generations": args.generations,
        "population": args.population,
        "candidates": candidates,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(
        f"tiny search with gpus_per_worker=1 tasks on {gpus} x {results['device']}: {len(trained)} candidates trained "
        f"in {wall:.0f}s, all on a GPU: {ok}; wrote {args.out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
