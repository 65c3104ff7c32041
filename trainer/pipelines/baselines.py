"""The fixed methods as baselines of a loss search: every entry trains from the same preference pairs.

    from trainer.pipelines.baselines import BASELINES, run_baseline
    checkpoint = run_baseline("spin", "smollm2-135m-instruct", "pairs.jsonl", "out/spin", {"max_steps": 30})

Every value of ``BASELINES`` has the signature ``(name, model, train_pairs_path, output_dir, budget) -> str``
(the checkpoint folder) and can be called directly; ``run_baseline`` looks the name up. ``train_pairs_path``
is a preference file (TRL prompt/chosen/rejected, as the verifiable data builder writes); ``budget`` is a dict
of ``Budget`` fields (unknown keys are an error). What each method makes of the pairs:

- ``dpo`` (the ``sigmoid`` loss), ``ipo``, ``hinge``, ``discopop``, ``tdpo1``, ``tdpo2``: that loss on the
  pairs.
- ``spin``: the chosen responses are the SFT answers; ``budget["iterations"]`` SPIN iterations.
- ``spa``: the first ``seed_fraction`` of the pairs is the labelled seed set, the other pairs' prompts are the
  unlabelled prompts; ``iterations`` SPA iterations.
- ``aepo_dpo``: the policy samples ``num_responses`` responses per prompt, AEPO picks ``num_annotations`` of
  them, the verifiable checkers annotate those (rows need the data builder's ``id``, or ``family`` and
  ``params``), the best and worst form a pair (West-of-N), and DPO trains on the pairs.

Each runs resumably in ``output_dir`` (a rerun after an interruption skips the finished steps)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from trainer.chat import as_messages
from trainer.data import normalize_rows, read_rows
from trainer.generation import SamplingConfig, sample_responses
from trainer.pipelines.aepo import AepoConfig, run_aepo
from trainer.pipelines.common import TrainOptions, file_identity, train, train_facts
from trainer.pipelines.rewards import verifiable_reward
from trainer.pipelines.spa import SpaConfig, run_spa
from trainer.pipelines.spin import SpinConfig, run_spin
from trainer.pipelines.state import PipelineState, write_jsonl

BaselineFn = Callable[[str, str, str, str, Mapping[str, Any]], str]
LOSS_BASELINES = {
    "dpo": "sigmoid",
    "ipo": "ipo",
    "hinge": "hinge",
    "discopop": "discopop",
    "tdpo1": "tdpo1",
    "tdpo2": "tdpo2",
}


@dataclass(frozen=True)
class Budget:
    """What a baseline may spend. Training fields apply to every training step of a method."""

    max_steps: int = -1
    epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 2e-5
    beta: float = 0.1
    max_length: int = 256
    seed: int = 0
    ref_cache_dir: str | None = None
    iterations: int = 1
    seed_fraction: float = 0.25
    num_samples: int = 2
    num_responses: int = 4
    num_annotations: int = 2
    diversity_penalty: float = 1.0
    verifiable_seed: int = 0
    temperature: float = 0.9
    max_new_tokens: int = 64
    sampling_batch_size: int = 16

    @classmethod
    def from_dict(cls, budget: Mapping[str, Any]) -> Budget:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(budget) - known)
        if unknown:
            raise ValueError(f"unknown budget keys {unknown}; known: {', '.join(sorted(known))}")
        return cls(**budget)

    def train_options(self) -> TrainOptions:
        return TrainOptions(
            beta=self.beta,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            max_steps=self.max_steps,
            epochs=self.epochs,
            max_length=self.max_length,
            seed=self.seed,
            ref_cache_dir=self.ref_cache_dir,
        )

    def sampling(self, num_samples: int) -> SamplingConfig:
        return SamplingConfig(
            num_samples=num_samples,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.sampling_batch_size,
            seed=self.seed,
        )


def _pairs(path: str) -> list[dict[str, Any]]:
    """The pairs in the common layout, each with its original row (for ids and checker metadata)."""
    raw = read_rows(path)
    _, rows = normalize_rows(raw, "preference")
    return [row | {"raw": original} for row, original in zip(rows, raw, strict=True)]


def _text(completion: str | list[dict]) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def _unique_prompts(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, unique = set(), []
    for pair in pairs:
        key = repr(pair["prompt"])
        if key not in seen:
            seen.add(key)
            unique.append(pair)
    return unique


def loss_baseline(
    name: str, model: str, train_pairs_path: str, output_dir: str, budget: Mapping[str, Any]
) -> str:
    """``LOSS_BASELINES[name]`` trained on the pairs."""
    spec = Budget.from_dict(budget)
    directory = Path(output_dir)
    config = {"baseline": name, "model": model, "pairs": file_identity(train_pairs_path)} | asdict(spec)
    state = PipelineState(directory, config)
    state.run(
        "train",
        lambda: train_facts(
            train(
                model, Path(train_pairs_path), directory / "model", LOSS_BASELINES[name], spec.train_options()
            )
        ),
    )
    return str(directory / "model")


def spin_baseline(
    name: str, model: str, train_pairs_path: str, output_dir: str, budget: Mapping[str, Any]
) -> str:
    """SPIN with the chosen responses as the SFT answers."""
    spec = Budget.from_dict(budget)
    directory = Path(output_dir)
    sft = [
        {"prompt": as_messages(p["prompt"]), "completion": _text(p["chosen"])}
        for p in _pairs(train_pairs_path)
    ]
    write_jsonl(directory / "sft.jsonl", sft)
    config = SpinConfig(
        model=model,
        sft_data=str(directory / "sft.jsonl"),
        output_dir=str(directory / "spin"),
        iterations=spec.iterations,
        sampling=spec.sampling(1),
        train=spec.train_options(),
    )
    return run_spin(config)[-1]


def spa_baseline(
    name: str, model: str, train_pairs_path: str, output_dir: str, budget: Mapping[str, Any]
) -> str:
    """SPA with the first ``seed_fraction`` of the pairs as labelled seed data and the rest as prompts."""
    spec = Budget.from_dict(budget)
    directory = Path(output_dir)
    raw = read_rows(train_pairs_path)
    cut = max(1, math.ceil(spec.seed_fraction * len(raw)))
    if cut >= len(raw):
        raise ValueError(
            f"seed_fraction={spec.seed_fraction} leaves no prompts of the {len(raw)} pairs for SPA"
        )
    write_jsonl(directory / "seed.jsonl", raw[:cut])
    prompts = [{"prompt": as_messages(p["prompt"])} for p in _unique_prompts(_pairs(train_pairs_path)[cut:])]
    write_jsonl(directory / "prompts.jsonl", prompts)
    config = SpaConfig(
        model=model,
        seed_data=str(directory / "seed.jsonl"),
        prompts=str(directory / "prompts.jsonl"),
        output_dir=str(directory / "spa"),
        iterations=spec.iterations,
        sampling=spec.sampling(spec.num_samples),
        seed_train=spec.train_options(),
        train=spec.train_options(),
    )
    return run_spa(config)[-1]


def aepo_dpo_baseline(
    name: str, model: str, train_pairs_path: str, output_dir: str, budget: Mapping[str, Any]
) -> str:
    """Sample N per prompt, AEPO-select and annotate k (West-of-N), then DPO."""
    spec = Budget.from_dict(budget)
    directory = Path(output_dir)
    config = {"baseline": name, "model": model, "pairs": file_identity(train_pairs_path)} | asdict(spec)
    state = PipelineState(directory, config)
    prompts = _unique_prompts(_pairs(train_pairs_path))

    def generate() -> dict:
        conversations = [as_messages(p["prompt"]) for p in prompts]
        responses = sample_responses(model, conversations, spec.sampling(spec.num_responses))
        rows = [
            {k: v for k, v in p["raw"].items() if k not in ("prompt", "chosen", "rejected")}
            | {"prompt": conversation, "responses": texts}
            for p, conversation, texts in zip(prompts, conversations, responses, strict=True)
        ]
        return {"prompts": write_jsonl(directory / "responses.jsonl", rows)}

    def annotate() -> dict:
        aepo = AepoConfig(
            num_responses=spec.num_responses,
            num_annotations=spec.num_annotations,
            west_of_n=True,
            diversity_penalty=spec.diversity_penalty,
        )
        result = run_aepo(
            directory / "responses.jsonl",
            directory / "aepo_pairs.jsonl",
            aepo,
            verifiable_reward(spec.verifiable_seed),
        )
        if result.rows_written == 0:
            raise RuntimeError("AEPO found no prompt whose annotated responses differ in reward; sample more")
        return asdict(result)

    state.run("generate", generate)
    state.run("annotate", annotate)
    state.run(
        "train",
        lambda: train_facts(
            train(model, directory / "aepo_pairs.jsonl", directory / "model", "sigmoid", spec.train_options())
        ),
    )
    return str(directory / "model")


BASELINES: dict[str, BaselineFn] = {name: loss_baseline for name in LOSS_BASELINES} | {
    "spin": spin_baseline,
    "spa": spa_baseline,
    "aepo_dpo": aepo_dpo_baseline,
}


def run_baseline(
    name: str, model: str, train_pairs_path: str, output_dir: str, budget: Mapping[str, Any]
) -> str:
    """Train baseline ``name`` from ``model`` on ``train_pairs_path`` into ``output_dir`` within ``budget``;
    returns the checkpoint folder."""
    try:
        method = BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}") from None
    return method(name, model, str(train_pairs_path), str(output_dir), dict(budget))
