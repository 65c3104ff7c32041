"""Benchmark data files: a local path, or a public URL downloaded once into the cache (for connected machines)."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from trainer.models import cache_root

FASTCHAT_DATA = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
MT_BENCH_QUESTIONS = f"{FASTCHAT_DATA}/mt_bench/question.jsonl"
MT_BENCH_JUDGE_PROMPTS = f"{FASTCHAT_DATA}/judge_prompts.jsonl"
MT_BENCH_REFERENCE_ANSWERS = f"{FASTCHAT_DATA}/mt_bench/reference_answer/gpt-4.jsonl"
ALPACA_EVAL_REFERENCE_OUTPUTS = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/results/gpt4_1106_preview/model_outputs.json"


def fetch(location: str) -> Path:
    """`location` itself if it is a local file, else the cached download of the URL."""
    if "://" not in location:
        path = Path(location)
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        return path
    digest = hashlib.sha256(location.encode()).hexdigest()[:12]
    target = cache_root() / "downloads" / f"{digest}-{Path(location).name}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        urllib.request.urlretrieve(location, partial)
        partial.rename(target)
    return target
