"""SPA: spread preference annotation. Kim et al. 2025, "Spread Preference Annotation: Direct Preference
Judgment for Efficient LLM Alignment" (ICLR), Algorithm 1.

    python -m trainer.pipelines.spa --model M --seed-data D --prompts P --iterations T --output-dir DIR

1. Seed: DPO (``sigmoid``) from ``--model`` (= pi_init) on the small labelled seed set (any preference
   format), with the training flags (``--seed-max-steps`` may shorten it).
2. Iteration t: the prompts are split into T disjoint chunks, one per iteration, as in the paper. The current
   policy (the seed model for t = 1, then iteration t-1's) samples K responses per prompt (``--num-samples``,
   default 2 as in the paper); each response is judged by the implicit reward
   ``log pi_current(y|x) - log pi_init(y|x)`` (summed completion log-probs; the direct preference judgment);
   the highest becomes chosen and the lowest rejected (prompts whose responses all score the same are
   dropped). Training uses ``--loss`` (default: the ``spa`` self-refinement loss) with the current policy as
   the reference (``--loss-params '{"alpha": 0.1, "lam": 0.5}'`` sets its options).

The training flags are ``trainer.config.TrainingConfig``'s.

Prompts file: ``.jsonl``/``.json`` rows with a ``prompt`` (string or chat messages).

Artefacts (resumable like SPIN's)::

    DIR/state.json                 configuration and finished steps (seed/train, iter_t/generate|judge|train)
    DIR/seed/model/                seed-DPO checkpoint + metrics.json
    DIR/iter_t/samples.jsonl       prompt (messages), responses (K strings)
    DIR/iter_t/judged.jsonl        prompt, responses, rewards (K implicit rewards)
    DIR/iter_t/pairs.jsonl         prompt, chosen, rejected (conversational), chosen_reward, rejected_reward
    DIR/iter_t/model/              checkpoint + metrics.json
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from trainer.arguments import add_arguments, from_arguments
from trainer.chat import Messages, as_messages, assistant
from trainer.config import LAUNCH_FIELDS, TrainingConfig
from trainer.data import DataFormatError, read_rows
from trainer.generation import SamplingConfig, add_sampling_arguments, sample_responses, sampling_from_args
from trainer.logprobs import completion_logps
from trainer.models import load_policy
from trainer.pipelines.common import (
    file_identity,
    setup_logging,
    train,
    train_facts,
)
from trainer.pipelines.state import PipelineState, read_jsonl, write_jsonl

log = logging.getLogger(__name__)
SPA_SAMPLING = SamplingConfig(num_samples=2, temperature=0.7, max_new_tokens=256)
SPA_TRAINING = TrainingConfig(loss="spa")  # the iterations' self-refinement loss; everything else the default
SEED_LOSS = "sigmoid"


@dataclass(frozen=True)
class SpaConfig:
    """``training.model`` is pi_init. The iterations train with ``training``; the seed step with the same
    settings, the ``sigmoid`` loss and at most ``seed_max_steps`` steps (None: ``training.max_steps``)."""

    seed_data: str
    prompts: str
    output_dir: str
    training: TrainingConfig = field(default_factory=lambda: SPA_TRAINING)
    iterations: int = 3
    seed_max_steps: int | None = None
    sampling: SamplingConfig = field(default_factory=lambda: SPA_SAMPLING)
    scoring_batch_size: int = 8
    ref_cache_dir: str | None = None

    def seed_training(self) -> TrainingConfig:
        seed = self.training.with_loss(SEED_LOSS)
        return seed if self.seed_max_steps is None else replace(seed, max_steps=self.seed_max_steps)


def load_prompts(path: str | Path) -> list[Messages]:
    prompts = []
    for number, row in enumerate(read_rows(path)):
        prompt = row.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
            raise DataFormatError(number, "prompt", "must be a non-empty string or list of chat messages")
        prompts.append(as_messages(prompt))
    return prompts


def chunk(items: Sequence, parts: int, index: int) -> list:
    """The ``index``-th of ``parts`` contiguous, near-equal, disjoint chunks of ``items``."""
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return list(items[bounds[index] : bounds[index + 1]])


def implicit_rewards(
    policy: str,
    initial: str,
    prompts: Sequence[Messages],
    responses: Sequence[str],
    batch_size: int,
    max_length: int,
) -> list[float]:
    """``log pi_policy(y|x) - log pi_initial(y|x)`` for each (prompt, response)."""
    totals = []
    for name in (policy, initial):
        model, tokenizer = load_policy(name)
        if torch.cuda.is_available():
            model = model.to("cuda")
        totals.append(
            completion_logps(
                model,
                tokenizer,
                prompts,
                responses,
                batch_size,
                max_length,
                description=f"log-probs under {Path(name).name}",
            )
        )
        del model
    return [current - init for current, init in zip(*totals, strict=True)]


def judge_rows(samples: Sequence[dict], rewards: Sequence[float]) -> list[dict]:
    """Attach each response's reward to its sample row (rewards flattened in sample-then-response order)."""
    judged, position = [], 0
    for row in samples:
        count = len(row["responses"])
        judged.append(row | {"rewards": list(rewards[position : position + count])})
        position += count
    return judged


def best_worst_pairs(judged: Sequence[dict]) -> list[dict]:
    """The highest-reward response as chosen, the lowest as rejected; a tie carries no preference: dropped."""
    pairs = []
    for row in judged:
        rewards = row["rewards"]
        best = max(range(len(rewards)), key=rewards.__getitem__)
        worst = min(range(len(rewards)), key=rewards.__getitem__)
        if rewards[best] == rewards[worst] or row["responses"][best] == row["responses"][worst]:
            continue
        pairs.append(
            {
                "prompt": row["prompt"],
                "chosen": assistant(row["responses"][best]),
                "rejected": assistant(row["responses"][worst]),
                "chosen_reward": rewards[best],
                "rejected_reward": rewards[worst],
            }
        )
    return pairs


def run_spa(config: SpaConfig) -> list[str]:
    """Run (or resume) seed DPO and the SPA iterations; returns the checkpoint of each iteration."""
    if config.iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {config.iterations}")
    if config.sampling.num_samples < 2:
        raise ValueError("SPA needs at least 2 samples per prompt to form a pair")
    directory = Path(config.output_dir)
    recorded = asdict(config) | {
        "seed_data": file_identity(config.seed_data),
        "prompts": file_identity(config.prompts),
    }
    recorded.pop("output_dir")
    # The prompt chunks depend on the number of iterations, so it is part of the configuration here.
    state = PipelineState(directory, recorded)
    prompts = load_prompts(config.prompts)
    if len(prompts) < config.iterations:
        raise ValueError(f"{len(prompts)} prompts cannot be split over {config.iterations} iterations")

    seed_dir = directory / "seed" / "model"
    state.run(
        "seed/train",
        lambda: train_facts(
            train(config.seed_training(), Path(config.seed_data), seed_dir, config.ref_cache_dir)
        ),
    )
    policy, checkpoints = str(seed_dir), []
    for t in range(1, config.iterations + 1):
        folder = directory / f"iter_{t}"
        conversations = chunk(prompts, config.iterations, t - 1)
        sampling = replace(config.sampling, seed=config.sampling.seed + t)

        def generate(policy=policy, folder=folder, conversations=conversations, sampling=sampling) -> dict:
            responses = sample_responses(policy, conversations, sampling)
            rows = [{"prompt": p, "responses": r} for p, r in zip(conversations, responses, strict=True)]
            return {"prompts": write_jsonl(folder / "samples.jsonl", rows), "policy": policy}

        def judge(policy=policy, folder=folder, t=t) -> dict:
            samples = read_jsonl(folder / "samples.jsonl")
            flat_prompts = [row["prompt"] for row in samples for _ in row["responses"]]
            flat_responses = [text for row in samples for text in row["responses"]]
            rewards = implicit_rewards(
                policy,
                config.training.model,
                flat_prompts,
                flat_responses,
                config.scoring_batch_size,
                config.training.max_length,
            )
            judged = judge_rows(samples, rewards)
            write_jsonl(folder / "judged.jsonl", judged)
            pairs = write_jsonl(folder / "pairs.jsonl", best_worst_pairs(judged))
            if pairs == 0:
                raise RuntimeError(
                    f"iteration {t}: every prompt's responses scored the same; no pairs to train on"
                )
            return {"pairs": pairs, "dropped_ties": len(judged) - pairs}

        def fit(policy=policy, folder=folder) -> dict:
            training = replace(config.training, model=policy, ref_model=policy)
            result = train(training, folder / "pairs.jsonl", folder / "model", config.ref_cache_dir)
            return train_facts(result) | {"reference": policy}

        state.run(f"iter_{t}/generate", generate)
        state.run(f"iter_{t}/judge", judge)
        state.run(f"iter_{t}/train", fit)
        policy = str(folder / "model")
        checkpoints.append(policy)
    return checkpoints


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.pipelines.spa",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seed-data", required=True, help="small labelled preference file (any supported format)"
    )
    parser.add_argument("--prompts", required=True, help=".jsonl/.json rows with a 'prompt'")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--seed-max-steps", type=int, default=None, help="seed DPO steps (default: --max-steps)"
    )
    parser.add_argument("--scoring-batch-size", type=int, default=SpaConfig.scoring_batch_size)
    parser.add_argument(
        "--ref-cache-dir", default=None, help="shared reference log-prob cache (sequence-level losses)"
    )
    add_sampling_arguments(parser, SPA_SAMPLING)
    parser.set_defaults(max_new_tokens=SPA_SAMPLING.max_new_tokens)
    add_arguments(parser, SPA_TRAINING, omit=LAUNCH_FIELDS, title="training")
    args = parser.parse_args(argv)
    setup_logging()
    config = SpaConfig(
        seed_data=args.seed_data,
        prompts=args.prompts,
        output_dir=args.output_dir,
        training=from_arguments(SPA_TRAINING, args),
        iterations=args.iterations,
        seed_max_steps=args.seed_max_steps,
        sampling=sampling_from_args(args),
        scoring_batch_size=args.scoring_batch_size,
        ref_cache_dir=args.ref_cache_dir,
    )
    checkpoints = run_spa(config)
    print(f"SPA: seed DPO + {len(checkpoints)} iterations; final checkpoint {checkpoints[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
