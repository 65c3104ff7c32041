"""float32 vs bfloat16 on this CPU, side by side in one run: the default search's DPO candidate trained and
evaluated in each.

For each arm the default ``TrainingConfig`` (SmolLM2-135M-Instruct, DPO, batch 8) trains on the default search's
verifiable training pairs (each arm with its own reference cache), then the trained model answers the default
held-out set greedily (the default fitness, ``evaluators.verifiable``) with its weights in the arm's dtype. Reported:
seconds per training step (median over steps 2..N), training and generation seconds, generated tokens per second,
the fitness of each arm with its standard error, and the paired difference bfloat16 - float32 with its paired
standard error (``evaluators.fitness.paired_delta``). ``dtype: auto`` may resolve to bf16 on a CPU only if
|delta| < 2 paired standard errors: on this machine kind it did not (``trainer.hardware``). Because the two arms
run one after the other, other load on a shared machine can favour either; ``interleaved_probe`` first times a
forward+backward of one default batch and a short greedy generation, float32 and bfloat16 alternately, for a ratio
that such load hits alike.

    python bench/cpu_dtype.py [--pair-cache DIR | --pairs FILE] [--max-steps N] [--heldout-topics N]
                                [--probe-repeats N] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from step_clock import StepClock

from evaluators.fitness import Fitness, paired_delta
from evaluators.verifiable import VerifiableSpec, evaluate_model, heldout_prompts
from evaluators.verifiable_data import PairBuildConfig, build_pairs
from evo.config import DataConfig, FitnessConfig
from trainer.config import TrainingConfig, TrainRun
from trainer.generation import SamplingConfig, chat, load_model
from trainer.hardware import FAST_BF16_FLAGS, cpu_flags, resolve_dtype
from trainer.train import run_training

ARMS = ("float32", "bfloat16")


def default_pairs(cache_dir: Path | None) -> Path:
    """The default search's verifiable training pairs (built once and cached, as the search does)."""
    config = PairBuildConfig(model=TrainingConfig().model, **DataConfig().pair_build)
    return build_pairs(config, cache_dir=cache_dir).train_path


def generated_tokens(path: Path, tokenizer) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(len(tokenizer(row["response"], add_special_tokens=False)["input_ids"]) for row in rows)


def _median_ratio(times: dict[str, list[float]]) -> dict:
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    return {
        "seconds": medians,
        "ratio_bfloat16_over_float32": round(medians["bfloat16"] / medians["float32"], 3),
    }


def interleaved_probe(pairs: Path, repeats: int, spec: VerifiableSpec) -> dict:
    """The base model's forward+backward on one default-sized batch (chosen and rejected of `batch_size` pairs,
    truncated to `max_length`), and greedy generation of 32 tokens for 16 held-out prompts, float32 and bfloat16
    alternately (after one warm-up round), so that other load on the machine hits both arms alike."""
    defaults = TrainingConfig()
    model, tokenizer = load_model(defaults.model, "float32")
    model_bf16 = load_model(defaults.model, "bfloat16")[0]
    rows = [json.loads(line) for line in pairs.read_text().splitlines() if line.strip()][
        : defaults.batch_size
    ]
    texts = [
        tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=False)
        for side in ("chosen", "rejected")
        for row in rows
    ]
    tokenizer.padding_side = "right"
    batch = tokenizer(
        texts, return_tensors="pt", padding=True, truncation=True, max_length=defaults.max_length
    )
    prompts = [[{"role": "user", "content": p.text}] for p in heldout_prompts(spec)[:16]]
    sampling = SamplingConfig(max_new_tokens=32, batch_size=16)
    step: dict[str, list[float]] = {name: [] for name in ARMS}
    generation: dict[str, list[float]] = {name: [] for name in ARMS}
    model.train()
    for round_ in range(repeats + 1):
        for name in ARMS:
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bfloat16"):
                model(**batch, labels=batch["input_ids"]).loss.backward()
            model.zero_grad()
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            chat(model_bf16 if name == "bfloat16" else model, tokenizer, prompts, sampling)
            if round_:
                step[name].append(seconds)
                generation[name].append(time.perf_counter() - started)
    return {
        "repeats": repeats,
        "train_batch_shape": list(batch["input_ids"].shape),
        "forward_backward": _median_ratio(step),
        "generation_16_prompts_32_tokens": _median_ratio(generation),
    }


def run_arm(
    dtype: str, pairs: Path, work: Path, max_steps: int, spec: VerifiableSpec
) -> tuple[dict, Fitness]:
    training = dataclasses.replace(TrainingConfig(), dtype=dtype, max_steps=max_steps)
    run = TrainRun(
        data=str(pairs), output_dir=str(work / dtype), ref_cache_dir=str(work / f"refcache-{dtype}")
    )
    clock = StepClock()
    load_before = os.getloadavg()[0]
    result = run_training(training, run, callbacks=[clock])
    generations = work / f"generations-{dtype}.jsonl"
    model, tokenizer = load_model(result.output_dir, dtype)
    fitness = evaluate_model(model, tokenizer, dataclasses.replace(spec, generations_path=str(generations)))
    tokens = generated_tokens(generations, tokenizer)
    seconds = fitness.details["generation_seconds"]
    steps = clock.step_seconds
    return {
        "dtype": dtype,
        "resolved": str(resolve_dtype(dtype, "cpu")).removeprefix("torch."),
        "generation_weights_dtype": str(model.dtype).removeprefix("torch."),
        "train_steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "step_seconds": [round(s, 2) for s in steps],
        "seconds_per_step": round(statistics.median(steps), 3) if steps else None,
        "losses": [round(x, 4) for x in result.losses],
        "generation_seconds": seconds,
        "generated_tokens": tokens,
        "generated_tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "fitness": round(fitness.score, 4),
        "stderr": round(fitness.stderr, 4),
        "n": fitness.n,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }, fitness


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--pairs", type=Path, help="training pairs (.jsonl); default: the default search's")
    source.add_argument("--pair-cache", type=Path, help="cache folder of the built verifiable pairs")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the default search's one epoch")
    parser.add_argument(
        "--heldout-topics",
        type=int,
        default=FitnessConfig().verifiable["n_heldout_topics"],
        help="held-out topics x 12 families (default: the default search's)",
    )
    parser.add_argument("--probe-repeats", type=int, default=3, help="interleaved probe rounds (0: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu_dtype.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    pairs = args.pairs or default_pairs(args.pair_cache)
    spec = VerifiableSpec(**(FitnessConfig().verifiable | {"n_heldout_topics": args.heldout_topics}))
    probe = interleaved_probe(pairs, args.probe_repeats, spec) if args.probe_repeats else None
    arms, fitnesses = {}, {}
    with tempfile.TemporaryDirectory(prefix="cpu-dtype-") as scratch:
        for dtype in ARMS:
            arms[dtype], fitnesses[dtype] = run_arm(dtype, pairs, Path(scratch), args.max_steps, spec)
    delta = paired_delta(fitnesses["bfloat16"], fitnesses["float32"])
    within_noise = abs(delta.delta) < 2 * delta.stderr or delta.delta == 0
    flags = sorted(cpu_flags() & (FAST_BF16_FLAGS | {"amx_tile", "avx512f"}))
    fp32, bf16 = arms["float32"], arms["bfloat16"]
    report = {
        "model": TrainingConfig().model,
        "sizes": {
            "train_pairs": sum(1 for line in pairs.read_text().splitlines() if line.strip()),
            "batch_size": TrainingConfig().batch_size,
            "max_steps": args.max_steps,
            "heldout_prompts": fitnesses["bfloat16"].n,
            "heldout_topics": args.heldout_topics,
            "max_new_tokens": spec.max_new_tokens,
        },
        "cpu_flags": flags,
        "auto_resolves_to": str(resolve_dtype("auto", "cpu")).removeprefix("torch."),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "interleaved_probe": probe,
        "arms": arms,
        "step_time_ratio_bfloat16_over_float32": round(
            bf16["seconds_per_step"] / fp32["seconds_per_step"], 3
        ),
        "generation_time_ratio_bfloat16_over_float32": round(
            bf16["generation_seconds"] / fp32["generation_seconds"], 3
        ),
        "paired_fitness_delta_bfloat16_minus_float32": round(delta.delta, 4),
        "paired_stderr": round(delta.stderr, 4),
        "paired_n": delta.n,
        "bfloat16_within_noise": within_noise,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"bfloat16 / float32: step time x{report['step_time_ratio_bfloat16_over_float32']}, "
        f"generation time x{report['generation_time_ratio_bfloat16_over_float32']}; fitness "
        f"{bf16['fitness']} vs {fp32['fitness']}, paired delta {delta.delta:+.4f} +- {delta.stderr:.4f} "
        f"({'within' if within_noise else 'outside'} 2 paired SE); wrote {args.out}"
    )
    return report


if __name__ == "__main__":
    main()
