"""GPU throughput of PreferenceTrainer vs TRL's stock DPOTrainer on a 1.7B model, side by side: tokens/s and MFU.

    python bench/gpu_trainer_throughput.py [--model PATH_OR_HUB_ID] [--steps 50] [--batch-size 8] [--out FILE]

Both trainers run the same sigmoid (DPO) loss with the same arguments (bf16, gradient checkpointing, a live
reference model, max length 1024) for ``--steps`` steps on the same synthetic pairs. The default model is a
randomly initialised Llama with SmolLM2-1.7B's shape and tokenizer (throughput does not depend on the weights, and
the GPU machine needs no download); ``--model`` takes a real checkpoint.

tokens/s counts non-padding tokens of chosen and rejected sequences (the Trainer's ``num_input_tokens_seen``) over
steps after ``--warmup`` steps. MFU = tokens/s x model FLOPs per token / peak bf16 FLOP/s, with model FLOPs per
token = 6P + 12 L d S for the policy (forward and backward) plus 2P + 4 L d S for the reference forward (P matmul
parameters, L layers, d hidden size, S mean sequence length; recomputation by gradient checkpointing not counted).
Writes ``bench/results/gpu_trainer_throughput.json``."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TrainerCallback
from trl import DPOConfig, DPOTrainer

from trainer.models import TINY, load_tokenizer
from trainer.trainer import PreferenceConfig, PreferenceTrainer

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}  # dense
# SmolLM2-1.7B's config.json (HuggingFaceTB/SmolLM2-1.7B-Instruct)
SMOLLM2_1_7B = dict(
    vocab_size=49152,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=24,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=8192,
    rope_theta=130000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)
WORDS = (
    "the river carries light stone and sand down to a quiet sea under old bridges while gulls circle "
    "above the harbour and boats wait for the tide"
).split()


def pairs(n: int, prompt_words: int, answer_words: int) -> Dataset:
    def text(i: int, k: int) -> str:
        return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(k))

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Scene {i}: {text(i, prompt_words)}. Describe it."}],
                "chosen": [{"role": "assistant", "content": text(i + 1, answer_words)}],
                "rejected": [{"role": "assistant", "content": text(i + 2, answer_words).upper()}],
            }
            for i in range(n)
        ]
    )


class TokenClock(TrainerCallback):
    """(time, tokens seen) at the end of every step."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), state.num_input_tokens_seen))


def peak_flops(device_name: str, override_tflops: float | None) -> float:
    if override_tflops is not None:
        return override_tflops * 1e12
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return tflops * 1e12
    raise SystemExit(f"unknown peak bf16 FLOP/s for {device_name!r}: pass --peak-tflops")


def flops_per_token(model, seq_len: float) -> float:
    config = model.config
    params = sum(p.numel() for p in model.parameters())  # tied embeddings: the LM head matmul, counted once
    attention = config.num_hidden_layers * config.hidden_size * seq_len
    return (6 * params + 12 * attention) + (2 * params + 4 * attention)


def run(kind: str, model_path: str, data: Dataset, args: argparse.Namespace, peak: float, out: str) -> dict:
    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    common = dict(
        output_dir=out,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-6,
        beta=0.1,
        max_length=args.max_length,
        bf16=True,
        gradient_checkpointing=True,
        report_to="none",
        save_strategy="no",
        logging_steps=args.steps,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=2,
        include_num_input_tokens_seen="non_padding",
    )
    if kind == "PreferenceTrainer":
        trainer = PreferenceTrainer(
            model=model,
            args=PreferenceConfig(loss="sigmoid", **common),
            train_dataset=data,
            processing_class=tokenizer,
        )
    else:
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(loss_type=["sigmoid"], **common),
            train_dataset=data,
            processing_class=tokenizer,
        )
    clock = TokenClock()
    trainer.add_callback(clock)
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (t0, n0), (t1, n1) = clock.marks[args.warmup - 1], clock.marks[-1]
    steps = len(clock.marks) - args.warmup
    tokens_per_s = (n1 - n0) / (t1 - t0)
    seq_len = (n1 - n0) / (steps * 2 * args.batch_size)
    flops = flops_per_token(trainer.model, seq_len)
    result = {
        "tokens_per_s": tokens_per_s,
        "step_s": (t1 - t0) / steps,
        "mean_sequence_tokens": seq_len,
        "model_tflops_per_s": tokens_per_s * flops / 1e12,
        "mfu": tokens_per_s * flops / peak,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "measured_steps": steps,
    }
    del trainer, model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="checkpoint path or hub id (default: random SmolLM2-1.7B-shaped Llama)"
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--peak-tflops", type=float, help="peak dense bf16 TFLOP/s (default: from the GPU name)"
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "gpu_trainer_throughput.json")
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "no CUDA device: this benchmark measures GPU training throughput; run it on a GPU machine",
            file=sys.stderr,
        )
        return 2
    device = torch.cuda.get_device_name(0)
    peak = peak_flops(device, args.peak_tflops)
    data = pairs(
        args.steps * args.batch_size, prompt_words=200, answer_words=450
    )  # ~700-1000 tokens a sequence
    with tempfile.TemporaryDirectory() as scratch:
        model_path = args.model
        if model_path is None:
            model_path = f"{scratch}/smollm2-1.7b-random"
            torch.manual_seed(0)
            LlamaForCausalLM(LlamaConfig(**SMOLLM2_1_7B)).save_pretrained(model_path)
            load_tokenizer(TINY).save_pretrained(model_path)  # the SmolLM2 tokenizer
        runs = {
            kind: run(kind, model_path, data, args, peak, f"{scratch}/{kind}")
            for kind in ("PreferenceTrainer", "DPOTrainer")
        }
    ours, trl = runs["PreferenceTrainer"], runs["DPOTrainer"]
    results = {
        "device": device,
        "torch": torch.__version__,
        "model": args.model or "random Llama, SmolLM2-1.7B shape",
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "batch_size_pairs": args.batch_size,
        "max_length": args.max_length,
        "peak_tflops": peak / 1e12,
        **runs,
        "tokens_per_s_ratio": ours["tokens_per_s"] / trl["tokens_per_s"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    for kind, r in runs.items():
        print(
            f"{kind:>17}: {r['tokens_per_s']:,.0f} tokens/s, MFU {r['mfu']:.1%}, {r['step_s']:.3f} s/step, "
            f"peak {r['peak_memory_gib']:.1f} GiB"
        )
    print(f"PreferenceTrainer / DPOTrainer tokens/s = {results['tokens_per_s_ratio']:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
