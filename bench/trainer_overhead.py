"""PreferenceTrainer vs TRL's stock DPOTrainer, measured side by side in one run.

(a) steps/s of PreferenceTrainer(sigmoid) / DPOTrainer(sigmoid), both with a live reference model (target >= 0.95);
(b) wall time of 4 candidate losses sharing the reference cache / 4 independent DPOTrainer runs of the same
    losses (target <= 0.8), in both pairings: against DPOTrainer with a live reference model (the reference
    forward in every step: most of that gap is not the cache) and against DPOTrainer with
    `precompute_ref_log_probs` (each run computes its own reference log-probs once: what the shared cache saves).

    python bench/trainer_overhead.py [--models tiny smollm2-135m-instruct] [--steps 12] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from step_clock import StepClock
from trl import DPOConfig, DPOTrainer

from trainer.models import load_policy
from trainer.trainer import PreferenceConfig, PreferenceTrainer

CANDIDATES = ["sigmoid", "hinge", "ipo", "discopop"]  # losses both trainers implement
WORDS = "the river carries light stone and sand down to a quiet sea under old bridges".split()


def pairs(n: int) -> Dataset:
    rows = []
    for i in range(n):
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40))
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"Describe scene {i} in plain lowercase words."}],
                "chosen": [{"role": "assistant", "content": body}],
                "rejected": [{"role": "assistant", "content": body.upper().replace(" ", ", ")}],
            }
        )
    return Dataset.from_list(rows)


def common(out: str, steps: int, batch: int) -> dict:
    return dict(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-5,
        beta=0.1,
        max_length=192,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        logging_steps=steps,
        disable_tqdm=True,
        seed=0,
    )


def run(
    kind: str, model_name: str, loss: str, data: Dataset, steps: int, batch: int, cache: str | None
) -> tuple:
    model, tokenizer = load_policy(model_name)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        if kind == "ours":
            args = PreferenceConfig(loss=loss, ref_cache_dir=cache, **common(out, steps, batch))
            trainer = PreferenceTrainer(
                model=model, args=args, train_dataset=data, processing_class=tokenizer
            )
        else:
            precompute = kind == "trl-precompute"
            args = DPOConfig(
                loss_type=[loss], precompute_ref_log_probs=precompute, **common(out, steps, batch)
            )
            trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        trainer.add_callback(clock)
        trainer.train()
        wall = time.perf_counter() - started
    return clock.steps_per_second, wall


def bench_model(model_name: str, steps: int, batch: int, repeats: int) -> dict:
    data = pairs(steps * batch)
    load_policy(model_name)  # materialize the checkpoint outside the timings
    ours, trl = [], []
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        ours.append(run("ours", model_name, "sigmoid", data, steps, batch, None)[0])
        trl.append(run("trl", model_name, "sigmoid", data, steps, batch, None)[0])
    with tempfile.TemporaryDirectory() as cache:
        shared = sum(run("ours", model_name, loss, data, steps, batch, cache)[1] for loss in CANDIDATES)
    independent = sum(run("trl", model_name, loss, data, steps, batch, None)[1] for loss in CANDIDATES)
    precomputed = sum(
        run("trl-precompute", model_name, loss, data, steps, batch, None)[1] for loss in CANDIDATES
    )
    result = {
        "steps": steps,
        "batch_size": batch,
        "ours_steps_per_s": statistics.median(ours),
        "trl_steps_per_s": statistics.median(trl),
        "steps_per_s_ratio": statistics.median(ours) / statistics.median(trl),
        "shared_cache_4_candidates_s": shared,
        "independent_trl_4_candidates_s": independent,
        "wall_time_ratio": shared / independent,
        "independent_trl_precomputed_4_candidates_s": precomputed,
        "wall_time_ratio_vs_trl_precomputed": shared / precomputed,
    }
    print(
        f"{model_name}: steps/s ours {result['ours_steps_per_s']:.3f} / TRL {result['trl_steps_per_s']:.3f} = "
        f"{result['steps_per_s_ratio']:.3f} (target >= 0.95); 4 candidates shared cache {shared:.1f}s / "
        f"4 TRL runs {independent:.1f}s = {result['wall_time_ratio']:.3f} (target <= 0.8); "
        f"/ 4 TRL runs precomputing their reference {precomputed:.1f}s = "
        f"{result['wall_time_ratio_vs_trl_precomputed']:.3f}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2-135m-instruct"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "trainer_overhead.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    results = {"machine": {"threads": torch.get_num_threads(), "torch": torch.__version__}, "models": {}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for model in args.models:  # written after each model, so a long run keeps what it measured
        results["models"][model] = bench_model(model, args.steps, args.batch_size, args.repeats)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
