"""What a recipe will do and cost, without training: ``python -m evo.launch --config RECIPE --plan [--json]``.

Per candidate: its placement (``evo.workers.Placement``: workers, GPUs per worker, DeepSpeed stage), the training
dtype and generation backend, optimizer steps and tokens, evaluation generations and judge calls; for the whole
budget (baselines + generations x population): GPU-hours (CPU-hours without GPUs) and the LLM spend of the proposer
and the judge. The estimates are arithmetic over stated assumptions (``ASSUMPTIONS``), not measurements.

The model's size comes from its config when that can be read offline (a preset, a local folder, the Hugging Face
cache), else from the recipe's ``model_params_b``. ``check`` raises ``PlanDoesNotFit`` with the fix when the
weights, gradients and AdamW states (16 bytes a parameter) do not fit the memory of one device under the recipe's
sharding, or when a candidate asks for more GPUs than the Ray cluster at ``RAY_ADDRESS`` has."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from evo.config import SearchConfig
from evo.workers import Placement
from trainer.deepspeed import load_config as load_deepspeed_config

# Pairs in the training split of the hub datasets the recipes name (their dataset cards), for the step count.
HUB_TRAIN_PAIRS = {
    "argilla/dpo-mix-7k": 6750,
    "HuggingFaceH4/ultrafeedback_binarized": 61135,
    "argilla/ultrafeedback-binarized-preferences-cleaned": 60917,
    "UCLA-AGI/SPIN_iter0": 49792,
}
MT_BENCH_TURNS = 160  # 80 questions x 2 turns, each answered and judged once (FastChat single grading)
ALPACA_EVAL_INSTRUCTIONS = 805
# USD per 1M input / output tokens (list prices) of the judges the recipes name
JUDGE_PRICES = {"gpt-4": (30.0, 60.0), "gpt-4-1106-preview": (10.0, 30.0), "gpt-4o": (2.5, 10.0)}
ASSUMPTIONS = {
    "gpu_memory_gb": 80.0,  # one GPU of the recipes' nodes
    "gpu_peak_tflops": 989.0,  # H100 bf16 dense
    "train_mfu": 0.35,  # model FLOPs utilisation of training (6 x params x tokens, 8 with recomputation)
    "generation_mfu": {"hf": 0.02, "vllm": 0.15, "auto": 0.15},  # decoding is memory-bound
    "cpu_tflops_per_core": 0.05,  # achieved, float32 training on a CPU core
    "bytes_per_param_trained": 16,  # fp32 weights + gradients + AdamW's two moments
    "bytes_per_param_reference": 2,  # a bf16 reference model alongside (when not cached)
    "judge_tokens": (1500, 300),  # input, output tokens of one judge call
    "proposer_tokens": (3000, None),  # input tokens of one proposal; output: llm.max_tokens
}


class PlanDoesNotFit(ValueError):
    """The recipe cannot run as configured; the message names the fix."""


@dataclass(frozen=True)
class CandidatePlan:
    workers: int
    gpus_per_worker: float
    gpus: float
    cpus: float
    deepspeed: str | None
    zero_stage: int | None
    dtype: str
    generation_backend: str
    train_pairs: int | None
    optimizer_steps: int | None
    train_tokens: int | None  # at most: pairs x epochs x 2 sequences x max_length
    eval_generations: int
    eval_tokens: int  # at most: generations x max_new_tokens
    judge_calls: int
    memory_per_device_gb: float | None
    hours: float | None  # GPU-hours (all its GPUs), or CPU-hours without GPUs


@dataclass(frozen=True)
class SearchPlan:
    model: str
    model_params_b: float | None
    model_params_from: str  # "config" | "recipe" | "unknown"
    candidates: int
    candidate: CandidatePlan
    gpu_hours: float | None
    cpu_hours: float | None
    judge_usd: float | None
    proposer_usd: float
    assumptions: dict
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def model_params_b(config: SearchConfig) -> tuple[float | None, str]:
    """The policy's size in billions of parameters and where it came from."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from trainer.models import resolve_model_path

        model_config = AutoConfig.from_pretrained(
            resolve_model_path(config.training.model), local_files_only=True
        )
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(model_config)
        return sum(p.numel() for p in model.parameters()) / 1e9, "config"
    except Exception:  # not readable offline: the recipe's declaration
        if config.model_params_b is not None:
            return config.model_params_b, "recipe"
        return None, "unknown"


def _zero_stage(deepspeed: str | None) -> int | None:
    if deepspeed is None:
        return None
    return int(load_deepspeed_config(deepspeed).get("zero_optimization", {}).get("stage", 0))


def _train_pairs(config: SearchConfig) -> int | None:
    data = config.data
    if data.source == "synthetic":
        pairs: int | None = data.synthetic_pairs
    elif data.source == "hub":
        pairs = HUB_TRAIN_PAIRS.get(data.hub_dataset or "")
    elif data.source == "file" and data.train_path and os.path.exists(data.train_path):
        with open(data.train_path) as rows:
            pairs = sum(1 for line in rows if line.strip())
    else:
        pairs = None  # verifiable: sampled from the policy at run time
    if pairs is not None and data.max_train_pairs is not None:
        pairs = min(pairs, data.max_train_pairs)
    return pairs


def _evaluation(config: SearchConfig) -> tuple[int, int, int, str, float]:
    """Generations, generated tokens (at most), judge calls, backend and judge USD of one candidate's fitness."""
    fitness = config.fitness
    names = list(fitness.weights) if fitness.kind == "weighted" else [fitness.kind]
    generations = tokens = calls = 0
    usd, backends = 0.0, []
    for name in names:
        block = "alpaca_eval" if name.startswith("alpaca_eval") else name
        options = dict(getattr(fitness, block, {}))
        backends.append(options.get("backend", "auto"))
        if name == "mt_bench":
            count, judged, judge = (
                MT_BENCH_TURNS,
                MT_BENCH_TURNS,
                options.get("judge", {}).get("model", "gpt-4"),
            )
        elif block == "alpaca_eval":
            count = options.get("max_instances") or ALPACA_EVAL_INSTRUCTIONS
            judged, judge = count, options.get("judge", {}).get("model", "gpt-4-1106-preview")
        elif name == "verifiable":
            from evaluators import make_spec
            from evaluators.verifiable import heldout_prompts

            count, judged, judge = len(heldout_prompts(make_spec("verifiable", **options))), 0, None
        else:  # proxy: log-probs of held-out pairs, no generation
            count, judged, judge = 0, 0, None
        generations += count
        tokens += count * int(options.get("max_new_tokens", 1024 if name == "mt_bench" else 64))
        calls += judged
        prices = JUDGE_PRICES.get(judge or "")
        if judged and prices:
            tokens_in, tokens_out = ASSUMPTIONS["judge_tokens"]
            usd += judged * (tokens_in * prices[0] + tokens_out * prices[1]) / 1e6
    backend = backends[0] if len(set(backends)) == 1 else "+".join(backends)
    return generations, tokens, calls, backend, usd


def _memory_gb(params_b: float, placement: Placement, stage: int | None, cached_reference: bool) -> float:
    """Weights, gradients and optimizer states of one device (activations not counted)."""
    trained = params_b * ASSUMPTIONS["bytes_per_param_trained"]
    reference = 0.0 if cached_reference else params_b * ASSUMPTIONS["bytes_per_param_reference"]
    shards = max(placement.workers, 1)
    if stage == 3:
        return (trained + reference) / shards
    if stage in (1, 2):
        return params_b * 4 + (trained - params_b * 4) / shards + reference
    return trained + reference


def plan(config: SearchConfig) -> SearchPlan:
    """The plan of ``config`` (see the module doc); ``check`` says whether it fits."""
    training = config.training
    try:
        placement = Placement.of(config.resources, training)
    except ValueError as err:
        raise PlanDoesNotFit(str(err)) from err
    params_b, source = model_params_b(config)
    stage = _zero_stage(training.deepspeed)
    pairs = _train_pairs(config)
    global_batch = placement.workers * training.batch_size * training.gradient_accumulation_steps
    steps = tokens = None
    if training.max_steps > 0:
        steps = training.max_steps
    elif pairs is not None:
        steps = math.ceil(pairs / global_batch) * math.ceil(training.num_train_epochs)
    if steps is not None:
        tokens = steps * global_batch * 2 * training.max_length
    generations, eval_tokens, calls, backend, judge_usd = _evaluation(config)
    gpu = placement.gpus_per_worker > 0
    dtype = training.dtype
    if dtype == "auto":
        dtype = "bfloat16" if gpu else "float32"
    cached_reference = stage is None and training.ref_model is None
    memory = None if params_b is None else _memory_gb(params_b, placement, stage, cached_reference)
    hours = None
    if params_b is not None and tokens is not None:
        flops = (8 if training.gradient_checkpointing else 6) * params_b * 1e9 * tokens
        flops += 0 if cached_reference else 2 * params_b * 1e9 * tokens
        if gpu:
            peak = ASSUMPTIONS["gpu_peak_tflops"] * 1e12
            mfu = ASSUMPTIONS["generation_mfu"].get(backend, 0.02)
            seconds = flops / (peak * ASSUMPTIONS["train_mfu"] * placement.gpus)
            seconds += 2 * params_b * 1e9 * eval_tokens / (peak * mfu)
            hours = seconds / 3600 * placement.gpus
        else:
            per_core = ASSUMPTIONS["cpu_tflops_per_core"] * 1e12
            hours = (flops + 2 * params_b * 1e9 * eval_tokens) / per_core / 3600
    candidate = CandidatePlan(
        workers=placement.workers,
        gpus_per_worker=placement.gpus_per_worker,
        gpus=placement.gpus,
        cpus=config.resources.num_cpus,
        deepspeed=training.deepspeed,
        zero_stage=stage,
        dtype=dtype,
        generation_backend=backend,
        train_pairs=pairs,
        optimizer_steps=steps,
        train_tokens=tokens,
        eval_generations=generations,
        eval_tokens=eval_tokens,
        judge_calls=calls,
        memory_per_device_gb=None if memory is None else round(memory, 1),
        hours=None if hours is None else round(hours, 3),
    )
    count = len(config.baselines) + config.generations * config.population
    notes = []
    if params_b is None:
        notes.append("model size unknown offline: declare model_params_b in the recipe for the estimates")
    if steps is None:
        notes.append(
            f"training pairs unknown before the run (data.source {config.data.source}): no step count"
        )
    return SearchPlan(
        model=training.model,
        model_params_b=None if params_b is None else round(params_b, 3),
        model_params_from=source,
        candidates=count,
        candidate=candidate,
        gpu_hours=None if hours is None or not gpu else round(hours * count, 2),
        cpu_hours=None if hours is None or gpu else round(hours * count, 2),
        judge_usd=round(judge_usd * count, 2),
        proposer_usd=round(_proposer_usd(config), 2),
        assumptions=ASSUMPTIONS,
        notes=tuple(notes),
    )


def _proposer_usd(config: SearchConfig) -> float:
    """LLM spend of the proposals (one call each, plus up to ``repair_rounds`` repairs), capped by its budget."""
    if not config.proposers.llm:
        return 0.0
    llm = config.llm
    calls = config.generations * config.population * (1 + config.proposers.repair_rounds)
    tokens_in = ASSUMPTIONS["proposer_tokens"][0]
    usd = calls * (tokens_in * llm.price_per_1k_input + llm.max_tokens * llm.price_per_1k_output) / 1000
    return min(usd, llm.max_cost_usd) if llm.max_cost_usd is not None else usd


def cluster_gpus() -> float | None:
    """The GPUs of the Ray cluster at ``RAY_ADDRESS`` (None when it is not set)."""
    if not os.environ.get("RAY_ADDRESS"):
        return None
    import ray

    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    try:
        return float(ray.cluster_resources().get("GPU", 0.0))
    finally:
        ray.shutdown()


def host_memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def check(search: SearchPlan, available_gpus: float | None) -> None:
    """Raise ``PlanDoesNotFit`` (with the fix) when one device cannot hold its share of the training, or the
    cluster has fewer GPUs than one candidate asks for."""
    candidate = search.candidate
    if available_gpus is not None and candidate.gpus > available_gpus:
        raise PlanDoesNotFit(
            f"one candidate asks for {candidate.gpus:g} GPUs ({candidate.workers} workers x "
            f"{candidate.gpus_per_worker:g}) but the Ray cluster at RAY_ADDRESS has {available_gpus:g}: lower "
            "resources.workers_per_candidate (and keep the global batch with training.gradient_accumulation_steps) "
            "or add GPU nodes"
        )
    if candidate.memory_per_device_gb is None:
        return
    gpu = candidate.gpus_per_worker > 0
    limit = ASSUMPTIONS["gpu_memory_gb"] * candidate.gpus_per_worker if gpu else host_memory_gb()
    if candidate.memory_per_device_gb <= limit:
        return
    where = f"{limit:g} GB of one GPU" if gpu else f"this machine's {limit:.0f} GiB of memory"
    sharding = f"ZeRO-{candidate.zero_stage}" if candidate.zero_stage else "no ZeRO"
    total = search.model_params_b * (
        ASSUMPTIONS["bytes_per_param_trained"] + ASSUMPTIONS["bytes_per_param_reference"]
    )
    workers = max(
        2, math.ceil(total / (ASSUMPTIONS["gpu_memory_gb"] / 2))
    )  # half of each GPU for activations
    raise PlanDoesNotFit(
        f"a full fine-tune of {search.model} ({search.model_params_b:g}B parameters) needs about "
        f"{candidate.memory_per_device_gb:g} GB per device for weights, gradients and AdamW states on "
        f"{candidate.workers} worker(s) with {sharding}, over the {where}. Fix: shard it with ZeRO-3 over GPUs, "
        f"training.deepspeed: zero3 with resources.gpus_per_worker: 1 and resources.workers_per_candidate: "
        f"{workers} or more (the 7B recipes use 8)"
    )


def _number(value: float | None, unit: str = "") -> str:
    return "unknown" if value is None else f"{value:,.4g}{unit}"


def render_plan(search: SearchPlan) -> str:
    """The plan as terminal lines."""
    c = search.candidate
    size = f"{search.model_params_b:g}B parameters (from its {search.model_params_from})"
    lines = [
        f"model: {search.model}, " + (size if search.model_params_b is not None else "size unknown"),
        f"candidates: {search.candidates} (baselines + generations x population)",
        "per candidate:",
        f"  workers: {c.workers} x {c.gpus_per_worker:g} GPU ({c.gpus:g} GPUs in all), {c.cpus:g} CPUs",
        f"  DeepSpeed: {c.deepspeed or 'none'}" + (f" (ZeRO-{c.zero_stage})" if c.zero_stage else ""),
        f"  dtype: {c.dtype}; generation backend: {c.generation_backend}",
        f"  training: {_number(c.train_pairs)} pairs, {_number(c.optimizer_steps)} optimizer steps, "
        f"at most {_number(c.train_tokens)} tokens",
        f"  memory per device: {_number(c.memory_per_device_gb, ' GB')} (weights, gradients, AdamW states)",
        f"  evaluation: {c.eval_generations} generations (at most {c.eval_tokens:,} tokens), "
        f"{c.judge_calls} judge calls",
        f"  {'GPU' if c.gpus else 'CPU'}-hours: {_number(c.hours)}",
        "whole budget:",
        f"  GPU-hours: {_number(search.gpu_hours)}; CPU-hours: {_number(search.cpu_hours)}",
        f"  judge: ${_number(search.judge_usd)}; proposer LLM: ${_number(search.proposer_usd)}",
        "estimates from the assumptions in evo/plan.py (ASSUMPTIONS); --json lists them",
    ]
    return "\n".join(lines + [f"note: {note}" for note in search.notes])
