"""Does the cheap rung rank losses as the full rung does? Spearman's rho between the two, with a bootstrap interval.

    python bench/rung_correlation.py                       # the default task at its full budget
    python bench/rung_correlation.py --heldout-topics 6    # a reduced full rung (stated in the JSON)
    python bench/rung_correlation.py --proxy-split 16      # reduced: train on the run's pairs but 16, score the
                                                           # proxy (preference accuracy) on those 16 (no generation)
    python bench/rung_correlation.py --score-all-items     # the cheap-budget model scored on every held-out item
                                                           # too, so other cheap rungs are read off the same runs

Trains each registry sequence-level loss at a cheap rung (``--cheap-budget``, ``--cheap-prompts``) and at the full
rung on the run's training pairs, scores each with the config's fitness, and writes the ranks' Spearman rho, a
percentile bootstrap interval over losses, and the cost ratio (cheap seconds / full seconds) to
``bench/results/rung_correlation.json`` after every loss (a stopped run keeps what it measured). rho < 0.5 is said
in the JSON: the cheap rung then does not rank losses usefully.

With ``--score-all-items`` (verifiable fitness), the cheap-budget model is scored on all of the full rung's items and
every item's outcome is kept, so three cheap rungs are measured from the same trainings: the configured one (cheap
budget, first topics), the cheap budget on every item, and the full budget on the first topics (its cost is then
the full training plus the first topics' share of the scoring time)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
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


def _train(config, data, loss: str, rung_index: int, work: Path, all_items: bool = False) -> dict:
    rung = config.fitness.rungs[rung_index]
    if all_items:
        rung = dataclasses.replace(rung, prompts=1.0)
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
        "train_seconds": result.timings.get("train_s"),
        "eval_seconds": result.timings.get("eval_s"),
        "per_item": result.metrics.get("fitness_details", {}).get("per_item"),
    }


def _cheap_topics(config) -> int:
    """How many held-out topics the config's cheap rung scores: ``evo.rungs``' own rule."""
    return rung_fitness(config.fitness, config.fitness.rungs[0], None).verifiable["n_heldout_topics"]


def _topic_prefix(per_item: dict, topics: int) -> list[str]:
    """The items of the first ``topics`` held-out topics (items are ``constraint/topic``, in topic order)."""
    kept = set(list(dict.fromkeys(key.split("/", 1)[1] for key in per_item))[:topics])
    return [key for key in per_item if key.split("/", 1)[1] in kept]


def _mean(per_item: dict, keys: list[str]) -> float:
    return sum(float(per_item[k]) for k in keys) / len(keys)


def rung_variants(rows: list[dict], topics: int, draws: int, seed: int) -> dict:
    """Spearman's rho against the full rung of three cheap rungs read off the kept per-item outcomes (the cheap
    rung's items are those of the first ``topics`` held-out topics)."""
    done = [r for r in rows if r["cheap"].get("per_item") and r["full"].get("per_item")]
    if len(done) < 3:
        return {}
    full = [r["full"]["fitness"] for r in done]
    subset = _topic_prefix(done[0]["full"]["per_item"], topics)
    share = len(subset) / len(done[0]["full"]["per_item"])
    cost_full = sum(r["full"]["seconds"] for r in done)
    variants = {
        "cheap budget, first topics (the configured rung)": (
            [_mean(r["cheap"]["per_item"], subset) for r in done],
            sum(r["cheap"]["train_seconds"] + share * r["cheap"]["eval_seconds"] for r in done),
        ),
        "cheap budget, every item": (
            [r["cheap"]["fitness"] for r in done],
            sum(r["cheap"]["seconds"] for r in done),
        ),
        "full budget, first topics": (
            [_mean(r["full"]["per_item"], subset) for r in done],
            sum(r["full"]["train_seconds"] + share * r["full"]["eval_seconds"] for r in done),
        ),
    }
    out = {}
    for name, (scores, cost) in variants.items():
        entry: dict = {"scores": scores, "distinct_scores": len(set(scores)), "cost_ratio": cost / cost_full}
        if len(set(scores)) > 1 and len(set(full)) > 1:
            entry["spearman_rho"] = float(spearmanr(scores, full).statistic)
            entry["rho_ci95"] = list(bootstrap_rho(scores, full, draws, seed))
        out[name] = entry
    return {"items_in_first_topics": len(subset), "losses": [r["loss"] for r in done], "variants": out}


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


ALL_ITEMS_NOTE = (
    "--score-all-items: the cheap-budget model was scored on every item, so `summary` is the cheap budget on every "
    "item; the configured rung (cheap budget, first topics) is under cheap_rungs_from_items"
)


def _resummarize(path: Path, recipe: str | None, draws: int) -> int:
    report = json.loads(path.read_text())
    setup, rows = report["setup"], report["per_loss"]
    config = load_config(
        recipe, overrides={"fitness": {"rungs": setup["rungs"], "verifiable": setup["fitness"]["verifiable"]}}
    )
    report["summary"] = {
        "losses_planned": report["summary"]["losses_planned"],
        **summary(rows, draws, config.seed),
    }
    if report.get("cheap_rungs_from_items") is not None:
        report["cheap_rungs_from_items"] = rung_variants(rows, _cheap_topics(config), draws, config.seed)
        report["setup"]["cheap_scored_on"] = ALL_ITEMS_NOTE
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("summary", "cheap_rungs_from_items")}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a recipe (default: the default search)")
    parser.add_argument("--losses", type=int, default=12, help="how many of the registry losses (>= 12)")
    parser.add_argument("--heldout-topics", type=int, help="verifiable held-out topics of the full rung")
    parser.add_argument(
        "--proxy-split", type=int, help="hold N of the training pairs out and score the proxy on them"
    )
    parser.add_argument(
        "--score-all-items",
        action="store_true",
        help="score the cheap-budget model on every item too, and keep per-item outcomes (verifiable fitness)",
    )
    parser.add_argument(
        "--cheap-budget", type=float, default=0.25, help="the cheap rung's share of the budget"
    )
    parser.add_argument("--cheap-prompts", type=float, default=1 / 3, help="its share of the held-out items")
    parser.add_argument("--work-dir", default="/tmp/rung_correlation")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument(
        "--resummarize", action="store_true", help="recompute the summaries of --out from its per-loss rows"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rung_correlation.json"))
    args = parser.parse_args(argv)
    fitness: dict = {"rungs": [{"budget": args.cheap_budget, "prompts": args.cheap_prompts}, {}]}
    if args.heldout_topics:
        fitness["verifiable"] = {"n_heldout_topics": args.heldout_topics}
    if args.resummarize:
        return _resummarize(Path(args.out), args.config, args.draws)
    config = load_config(args.config, overrides={"fitness": fitness})
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
            row[key] = _train(config, data, loss, index, work, all_items=args.score_all_items)
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
                "cheap_scored_on": ALL_ITEMS_NOTE if args.score_all_items else "the cheap rung's items",
            },
            "summary": {"losses_planned": args.losses, **summary(rows, args.draws, config.seed)},
            "cheap_rungs_from_items": (
                rung_variants(rows, _cheap_topics(config), args.draws, config.seed)
                if args.score_all_items
                else None
            ),
            "per_loss": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
