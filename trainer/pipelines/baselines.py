"""The fixed methods as baselines of a loss search: every entry trains from the same preference pairs.

    from trainer.pipelines.baselines import BASELINES, MethodOptions, run_baseline
    checkpoint = run_baseline("spin", TrainingConfig(max_steps=30), "pairs.jsonl", "out/spin", MethodOptions())

Every value of ``BASELINES`` has the signature ``(name, training, train_pairs_path, output_dir, options) -> str``
(the checkpoint folder) and can be called directly; ``run_baseline`` looks the name up. ``training`` (a
``trainer.config.TrainingConfig``: the policy in ``training.model``, the optimisation settings) applies to every
training step of a method, with the method's loss in place of ``training.loss`` (``TrainingConfig.with_loss``);
``options`` (``MethodOptions``) holds what only the methods have: iterations, data split, sampling, annotation.
``train_pairs_path`` is a preference file (TRL prompt/chosen/rejected, as the verifiable data builder writes).
What each method makes of the pairs:

- ``dpo`` (the ``sigmoid`` loss) and every other registry loss (``trainer.losses.loss_names()``, or a weighted
  combination such as ``0.8*sigmoid+sft``): that loss on the pairs (``baseline_names.baseline_loss``).
- ``spin``: the chosen responses are the SFT answers; ``options.iterations`` SPIN iterations.
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
from trainer.config import TrainingConfig
from trainer.data import normalize_rows, read_rows
from trainer.generation import SamplingConfig, sample_responses
from trainer.pipelines.aepo import AepoConfig, run_aepo
from trainer.pipelines.baseline_names import baseline_loss
from trainer.pipelines.common import file_identity, train, train_facts
from trainer.pipelines.rewards import verifiable_reward
from trainer.pipelines.spa import SpaConfig, run_spa
from trainer.pipelines.spin import SpinConfig, run_spin
from trainer.pipelines.state import PipelineState, write_jsonl

# Every registry loss is a baseline under its own name (``baseline_names``); these are the ones named here.
LOSS_BASELINES = {
    "dpo": "sigmoid",
    "ipo": "ipo",
    "hinge": "hinge",
    "discopop": "discopop",
    "tdpo1": "tdpo1",
    "tdpo2": "tdpo2",
}


@dataclass(frozen=True)
class MethodOptions:
    """What the methods add to the training config (the training settings themselves are ``TrainingConfig``'s)."""

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
    def from_dict(cls, options: Mapping[str, Any]) -> MethodOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown method options {unknown}; known: {', '.join(sorted(known))}")
        return cls(**options)

    def sampling(self, num_samples: int, seed: int) -> SamplingConfig:
        return SamplingConfig(
            num_samples=num_samples,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.sampling_batch_size,
            seed=seed,
        )


BaselineFn = Callable[[str, TrainingConfig, str, str, MethodOptions], str]


def _recorded(name: str, training: TrainingConfig, pairs: str, options: MethodOptions) -> dict[str, Any]:
    """A baseline run's configuration as its state file records it."""
    return {
        "baseline": name,
        "pairs": file_identity(pairs),
        "training": asdict(training),
        "options": asdict(options),
    }


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
    name: str, training: TrainingConfig, train_pairs_path: str, output_dir: str, options: MethodOptions
) -> str:
    """The registry loss ``name`` stands for (``baseline_names.baseline_loss``) trained on the pairs."""
    loss = baseline_loss(name)
    if loss is None:
        raise KeyError(f"{name!r} is a procedure, not a loss baseline")
    training = training.with_loss(loss)
    directory = Path(output_dir)
    state = PipelineState(directory, _recorded(name, training, train_pairs_path, options))
    state.run("train", lambda: train_facts(train(training, Path(train_pairs_path), directory / "model")))
    return str(directory / "model")


def spin_baseline(
    name: str, training: TrainingConfig, train_pairs_path: str, output_dir: str, options: MethodOptions
) -> str:
    """SPIN with the chosen responses as the SFT answers."""
    directory = Path(output_dir)
    sft = [
        {"prompt": as_messages(p["prompt"]), "completion": _text(p["chosen"])}
        for p in _pairs(train_pairs_path)
    ]
    write_jsonl(directory / "sft.jsonl", sft)
    config = SpinConfig(
        sft_data=str(directory / "sft.jsonl"),
        output_dir=str(directory / "spin"),
        training=training.with_loss("spin"),
        iterations=options.iterations,
        sampling=options.sampling(1, training.seed),
    )
    return run_spin(config)[-1]


def spa_baseline(
    name: str, training: TrainingConfig, train_pairs_path: str, output_dir: str, options: MethodOptions
) -> str:
    """SPA with the first ``seed_fraction`` of the pairs as labelled seed data and the rest as prompts."""
    directory = Path(output_dir)
    raw = read_rows(train_pairs_path)
    cut = max(1, math.ceil(options.seed_fraction * len(raw)))
    if cut >= len(raw):
        raise ValueError(
            f"seed_fraction={options.seed_fraction} leaves no prompts of the {len(raw)} pairs for SPA"
        )
    write_jsonl(directory / "seed.jsonl", raw[:cut])
    prompts = [{"prompt": as_messages(p["prompt"])} for p in _unique_prompts(_pairs(train_pairs_path)[cut:])]
    write_jsonl(directory / "prompts.jsonl", prompts)
    config = SpaConfig(
        seed_data=str(directory / "seed.jsonl"),
        prompts=str(directory / "prompts.jsonl"),
        output_dir=str(directory / "spa"),
        training=training.with_loss("spa"),
        iterations=options.iterations,
        sampling=options.sampling(options.num_samples, training.seed),
    )
    return run_spa(config)[-1]


def aepo_dpo_baseline(
    name: str, training: TrainingConfig, train_pairs_path: str, output_dir: str, options: MethodOptions
) -> str:
    """Sample N per prompt, AEPO-select and annotate k (West-of-N), then DPO."""
    training = training.with_loss("sigmoid")
    directory = Path(output_dir)
    state = PipelineState(directory, _recorded(name, training, train_pairs_path, options))
    prompts = _unique_prompts(_pairs(train_pairs_path))

    def generate() -> dict:
        conversations = [as_messages(p["prompt"]) for p in prompts]
        sampling = options.sampling(options.num_responses, training.seed)
        responses = sample_responses(training.model, conversations, sampling)
        rows = [
            {k: v for k, v in p["raw"].items() if k not in ("prompt", "chosen", "rejected")}
            | {"prompt": conversation, "responses": texts}
            for p, conversation, texts in zip(prompts, conversations, responses, strict=True)
        ]
        return {"prompts": write_jsonl(directory / "responses.jsonl", rows)}

    def annotate() -> dict:
        aepo = AepoConfig(
            num_responses=options.num_responses,
            num_annotations=options.num_annotations,
            west_of_n=True,
            diversity_penalty=options.diversity_penalty,
        )
        result = run_aepo(
            directory / "responses.jsonl",
            directory / "aepo_pairs.jsonl",
            aepo,
            verifiable_reward(options.verifiable_seed),
        )
        if result.rows_written == 0:
            raise RuntimeError("AEPO found no prompt whose annotated responses differ in reward; sample more")
        return asdict(result)

    state.run("generate", generate)
    state.run("annotate", annotate)
    state.run(
        "train", lambda: train_facts(train(training, directory / "aepo_pairs.jsonl", directory / "model"))
    )
    return str(directory / "model")


BASELINES: dict[str, BaselineFn] = {name: loss_baseline for name in LOSS_BASELINES} | {
    "spin": spin_baseline,
    "spa": spa_baseline,
    "aepo_dpo": aepo_dpo_baseline,
}


def run_baseline(
    name: str,
    training: TrainingConfig,
    train_pairs_path: str,
    output_dir: str,
    options: MethodOptions | None = None,
) -> str:
    """Train baseline ``name`` from ``training.model`` on ``train_pairs_path`` into ``output_dir``; returns the
    checkpoint folder."""
    method = BASELINES.get(name)
    if method is None:
        baseline_loss(name)  # KeyError listing what is known
        method = loss_baseline
    return method(name, training, str(train_pairs_path), str(output_dir), options or MethodOptions())
