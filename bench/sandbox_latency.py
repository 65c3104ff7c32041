"""Sandbox latency: seconds per validation with the warm pool vs a cold `python -c` subprocess per candidate.

    python bench/sandbox_latency.py [--rounds 3] [--cold 5]

Validates the reference losses (DPO, hinge, IPO and DiscoPOP's seven) `rounds` times through one warm
`SandboxPool` (per candidate: policy, a confined child that traces it, a second confined child that runs the
gradient tests, fingerprint and canonical form on the graph), then `cold` times in a fresh interpreter that
imports torch and runs the same steps without isolation. Prints and writes bench/results/sandbox_latency.json,
with the machine's load average (other processes share the cores). Targets: warm median <= 0.3 s and
warm/cold median ratio <= 0.25.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.executor import SandboxPool  # noqa: E402
from sandbox.validate import validate_source  # noqa: E402
from tests.sandbox.discopop_losses import ALL_LOSSES  # noqa: E402

RESULT = ROOT / "bench" / "results" / "sandbox_latency.json"
TARGET_MEDIAN_S = 0.3
TARGET_RATIO = 0.25
COLD_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from sandbox.contract import SEQUENCE
from sandbox.gradient_tests import run_gradient_tests
from sandbox.interpreter import build_loss
from sandbox.namespace import load_namespace
from sandbox.novelty import canonical_form, fingerprint
from sandbox.policy import check_policy
from sandbox.tracer import trace_loss
source = sys.stdin.read()
assert not check_policy(source)
graph = trace_loss(load_namespace(source)["loss_fn"], SEQUENCE)
loss_fn = build_loss(graph.dumps())
assert run_gradient_tests(loss_fn).passed
fingerprint(loss_fn)
canonical_form(graph)
"""


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ordered), "median_s": round(statistics.median(ordered), 4), "p95_s": round(p95, 4)}


def measure_warm(rounds: int) -> tuple[dict[str, float], dict[str, float], float, tuple[str, ...]]:
    """(wall seconds, sandbox CPU seconds) per validation, pool start seconds, missing isolation."""
    started = time.perf_counter()
    with SandboxPool() as pool:
        start_s = time.perf_counter() - started
        missing = pool.isolation_missing
        samples, cpu = [], []
        for _ in range(rounds):
            for name, source in ALL_LOSSES.items():
                result = validate_source(source, pool=pool)
                if not result.valid:
                    raise SystemExit(f"{name} failed validation: {result.error}")
                samples.append(result.seconds)
                cpu.append(result.cpu_seconds)
    return _summary(samples), _summary(cpu), round(start_s, 2), missing


def measure_cold(runs: int) -> dict[str, float]:
    script = COLD_SCRIPT.format(root=str(ROOT))
    sources = list(ALL_LOSSES.values())
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], input=sources[i % len(sources)], text=True, check=True)
        samples.append(time.perf_counter() - started)
    return _summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over the reference losses (warm)")
    parser.add_argument("--cold", type=int, default=5, help="cold subprocess runs")
    args = parser.parse_args()
    warm, warm_cpu, start_s, missing = measure_warm(args.rounds)
    cold = measure_cold(args.cold)
    ratio = round(warm["median_s"] / cold["median_s"], 4)
    report = {
        "warm_pool": warm,
        "warm_pool_cpu_seconds": warm_cpu,
        "cold_subprocess": cold,
        "ratio_warm_to_cold_median": ratio,
        "pool_start_s": start_s,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "isolation_missing": list(missing),
        "targets": {"median_s": TARGET_MEDIAN_S, "ratio": TARGET_RATIO},
        "meets_targets": warm["median_s"] <= TARGET_MEDIAN_S and ratio <= TARGET_RATIO,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
