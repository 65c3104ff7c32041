"""Does the cheap rung rank losses as the full rung does? Spearman's rho between the two, with a bootstrap interval.

    python bench/rung_correlation.py                       # the default task at its full budget
    python bench/rung_correlation.py --heldout-topics 6    # a reduced full rung (stated in the JSON)
    python bench/rung_correlation.py --proxy-split 16      # reduced: train on the run's pairs but 16, score the
                                                           # proxy (preference accuracy) on those 16 (no generation)

Trains each registry sequence-level loss at the cheap rung (``fitness.rungs[0]`` of the config) and at the full
rung on the run's training pairs, scores each with the config's fitness, and writes the ranks' Spearman rho, a
percentile bootstrap interval over losses, and the cost ratio (cheap seconds / full seconds) to
``bench/results/rung_correlation.json`` after every loss (a stopped run keeps what it measured). rho < 0.5 is said
in the JSON: the cheap rung then does not rank losses usefully."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

from scipy.stats import spearmanr

from evo.config import load_config, to_dict
from evo.data_prep import TrainingData, prepare_data
from evo.job import CandidateJob, run_job
from evo.rungs import rung_fitness, rung_training
from trainer.models import cache_root

LOSSES = (
    "sigmoid",
    "hinge",
    "ipo",
    "robust",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "apo_zero",
    "apo_down",
    "sppo_hard",
    "discopop",
    "aot",
    "rpo",
    "kto_pair",
    "cell",
    "aqfl",
)


def bootstrap_rho(cheap: list[float], full: list[float], draws: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of Spearman's rho over losses resampled with replacement."""
    rng = random.Random(seed)
    values = []
    for _ in range(draws):
        picks = [rng.randrange(len(cheap)) for _ in cheap]
        a, b = [cheap[i] for i in picks], [full[i] for i in picks]
        if len(set(a)) > 1 and len(set(b)) > 1:
            values.append(float(spearmanr(a, b).statistic))
    values.sort()
    if not values:
        return float("nan"), float("nan")
    return values[int(0.025 * len(values))], values[min(len(values) - 1, int(0.975 * len(values)))]


def summary(rows: list[dict], draws: int, seed: int) -> dict:
    done = [r for r in rows if r["cheap"]["fitness"] is not None and r["full"]["fitness"] is not None]
    cheap, full = [r["cheap"]["fitness"] for r in done], [r["full"]["fitness"] for r in done]
    out: dict = {"losses_measured": len(done)}
    if len(done) >= 3 and len(set(cheap)) > 1 and len(set(full)) > 1:
        rho = float(spearmanr(cheap, full).statistic)
        low, high = bootstrap_rho(cheap, full, draws, seed)
        out |= {"spearman_rho": rho, "rho_ci95": [low, high], "bootstrap_draws": draws}
        out["verdict"] = (
            "the cheap rung ranks losses usefully (rho >= 0.5)"
            if rho >= 0.5
            else "rho < 0.5: the cheap rung does NOT rank losses usefully; keep the cascade for confirmation only"
        )
    else:
        out["verdict"] = "too few losses with distinct scores to rank"
    cheap_s = sum(r["cheap"]["seconds"] for r in done)
    full_s = sum(r["full"]["seconds"] for r in done)
    out |= {
        "cheap_seconds": cheap_s,
        "full_seconds": full_s,
        "cost_ratio": cheap_s / full_s if full_s else None,
    }
    return out


def _train(config, data, loss: str, rung_index: int, work: Path) -> dict:
    rung = config.fitness.rungs[rung_index]
    job = CandidateJob(
        candidate_id=rung_index,
        name=f"{loss}-rung{rung_index}",
        work_dir=str(work / f"{loss}-rung{rung_index}"),
        train_path=str(data.train_path),
        heldout_path=str(data.heldout_path) if data.heldout_path else None,
        training=rung_training(config.training, rung),
        fitness=rung_fitness(config.fitness, rung, str(data.heldout_path) if data.heldout_path else None),
        loss=loss,
        ref_cache_dir=str(cache_root() / "refcache"),
    )
    started = time.monotonic()
    result = run_job(job)
    return {
        "fitness": result.fitness,
        "stderr": result.stderr,
        "n": result.n,
        "status": str(result.status),
        "reason": (result.reason or "")[:300] or None,
        "seconds": time.monotonic() - started,
        "steps": result.metrics.get("steps"),
    }


def _proxy_split(config, data, held: int, work: Path):
    """The run's pairs split (seeded) into training pairs and ``held`` held-out pairs scored by the proxy fitness."""
    rows = [line for line in data.train_path.read_text().splitlines() if line.strip()]
    random.Random(config.seed).shuffle(rows)
    folder = work / "split"
    folder.mkdir(parents=True, exist_ok=True)
    train, heldout = folder / "train.jsonl", folder / "heldout.jsonl"
    train.write_text("\n".join(rows[held:]) + "\n")
    heldout.write_text("\n".join(rows[:held]) + "\n")
    config = dataclasses.replace(config, fitness=dataclasses.replace(config.fitness, kind="proxy"))
    return config, TrainingData(train, heldout, {"n_train_pairs": len(rows) - held, "n_heldout_pairs": held})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a recipe (default: the default search)")
    parser.add_argument("--losses", type=int, default=12, help="how many of the registry losses (>= 12)")
    parser.add_argument("--heldout-topics", type=int, help="verifiable held-out topics of the full rung")
    parser.add_argument(
        "--proxy-split", type=int, help="hold N of the training pairs out and score the proxy on them"
    )
    parser.add_argument("--work-dir", default="/tmp/rung_correlation")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rung_correlation.json"))
    args = parser.parse_args(argv)
    overrides = (
        {"fitness": {"verifiable": {"n_heldout_topics": args.heldout_topics}}} if args.heldout_topics else {}
    )
    config = load_config(args.config, overrides=overrides)
    if len(config.fitness.rungs) < 2:
        print("the config has a single rung: nothing to correlate", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    data = prepare_data(config, work)
    reduced = (
        f"full rung scored on {args.heldout_topics} held-out topics instead of 16"
        if args.heldout_topics
        else None
    )
    if args.proxy_split:
        config, data = _proxy_split(config, data, args.proxy_split, work)
        reduced = (
            f"the default task's {data.stats['n_train_pairs']} + {args.proxy_split} verifiable pairs: trained on the "
            f"first, scored by the proxy (preference accuracy vs the reference) on the {args.proxy_split} held out "
            "(no generation: this machine's shared 2 cores could not generate for 24 models in the time)"
        )
    rows: list[dict] = []
    for loss in LOSSES[: args.losses]:
        row = {"loss": loss}
        for index, key in ((0, "cheap"), (len(config.fitness.rungs) - 1, "full")):
            row[key] = _train(config, data, loss, index, work)
            print(
                f"{loss} {key}: {row[key]['fitness']} +- {row[key]['stderr']} ({row[key]['seconds']:.0f}s)",
                flush=True,
            )
        rows.append(row)
        report = {
            "setup": {
                "rungs": to_dict(config)["fitness"]["rungs"],
                "training": to_dict(config)["training"],
                "fitness": {"kind": config.fitness.kind, "verifiable": config.fitness.verifiable},
                "n_train_pairs": data.stats.get("n_pairs", data.stats),
                "reduced": reduced,
            },
            "summary": {"losses_planned": args.losses, **summary(rows, args.draws, config.seed)},
            "per_loss": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
