"""AlpacaEval 2.0 judged by any OpenAI-compatible endpoint, through the `alpaca_eval` package.

    python -m evaluators.alpaca_eval --model PATH_OR_ID --output-dir DIR --judge-base-url URL --judge-model NAME

The model answers the AlpacaEval instructions (all 805, or a fixed random subset of `--max-instances`) with its
chat template; `alpaca_eval.evaluate` compares them with the reference outputs read from a file. The annotator
config is written at run time into `DIR/annotator/`: a copy of one of the package's configs (default: AlpacaEval
2.0's `weighted_alpaca_eval_gpt4_turbo`, which reads the judge's log-probabilities of `m`/`M`) with the judge's
model name, plus a client config holding only the base URL; the key is handed to the client in memory. Judge
annotations are cached in `DIR/annotator/`, so a rerun makes no new judge calls. Score = length-controlled win
rate (percent). Its fit needs `df_gamed.csv` from the Hugging Face dataset `tatsu-lab/alpaca_eval`: the file given
with `--lc-gamed-file` (`lc_gamed_file` in a recipe), else the Hugging Face cache, else a download; when none is
there, the evaluation fails before any generation and says so. With very few instances the fit itself can fail or
return NaN, which is reported in `details["lc_error"]` (score NaN); the raw win rate is always in
`details["win_rate"]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evaluators.cli import print_fitness
from evaluators.fitness import Fitness, FitnessUnavailable
from evaluators.judge import JudgeConfig, add_judge_arguments, judge_from_arguments
from evaluators.sources import ALPACA_EVAL_REFERENCE_OUTPUTS, fetch
from trainer.generation import SamplingConfig, sample_responses
from trainer.models import cache_root

ANNOTATOR_NAME = "evopo_judge"
GAMED_REPO, GAMED_FILE = "tatsu-lab/alpaca_eval", "df_gamed.csv"
GAMED_URL = f"https://huggingface.co/datasets/{GAMED_REPO}/resolve/main/{GAMED_FILE}"


@dataclass(frozen=True)
class AlpacaEvalSpec:
    """Reference outputs (path or URL), generation and judge settings; `judge.max_tokens=0` keeps the config's."""

    judge: JudgeConfig = field(default_factory=lambda: JudgeConfig(model="gpt-4-1106-preview", max_tokens=0))
    output_dir: str | None = None  # default: <model_dir>/alpaca_eval, or the cache for a preset/hub model
    model_id: str | None = None
    reference_outputs: str = ALPACA_EVAL_REFERENCE_OUTPUTS
    max_instances: int | None = None
    base_annotator: str = "weighted_alpaca_eval_gpt4_turbo"  # a config directory of the alpaca_eval package
    max_new_tokens: int = 1024
    batch_size: int = 8
    conv_template: str | None = None
    seed: int = 0
    lc_gamed_file: str | None = (
        None  # df_gamed.csv for the length-controlled fit; None: Hugging Face cache/download
    )
    backend: str = (
        "auto"  # generation, as trainer.generation.SamplingConfig: auto is vLLM on a GPU when installed
    )
    dtype: str = "auto"


def lc_gamed_file(spec: AlpacaEvalSpec) -> Path:
    """The `df_gamed.csv` the length-controlled fit needs: `spec.lc_gamed_file`, else the Hugging Face cache, else
    a download. Raises `FitnessUnavailable`, naming the file and the option, when there is none."""
    if spec.lc_gamed_file:
        path = Path(spec.lc_gamed_file).expanduser()
        if not path.is_file():
            raise FitnessUnavailable(
                f"--lc-gamed-file / fitness.alpaca_eval.lc_gamed_file: no file at {path}"
            )
        return path
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(GAMED_REPO, GAMED_FILE, repo_type="dataset")
    if isinstance(cached, str):
        return Path(cached)
    try:
        return Path(hf_hub_download(GAMED_REPO, GAMED_FILE, repo_type="dataset"))
    except Exception as err:  # noqa: BLE001 - offline, no access, no such revision: all mean "not here"
        raise FitnessUnavailable(
            f"AlpacaEval's length-controlled win rate needs {GAMED_FILE} from the Hugging Face dataset {GAMED_REPO}; "
            f"it is not in the Hugging Face cache and could not be downloaded ({type(err).__name__}). Download "
            f"{GAMED_URL} and pass its path with --lc-gamed-file PATH (in a recipe: fitness.alpaca_eval.lc_gamed_file)"
        ) from err


@contextlib.contextmanager
def _gamed_file_from(path: Path) -> Iterator[None]:
    """alpaca_eval's LC fit fetches df_gamed.csv with `hf_hub_download` and takes no path: hand it ours."""
    from alpaca_eval.metrics import glm_winrate

    original = glm_winrate.hf_hub_download
    glm_winrate.hf_hub_download = lambda *args, **kwargs: str(path)
    try:
        yield
    finally:
        glm_winrate.hf_hub_download = original


def select_instances(
    reference: Sequence[Mapping[str, Any]], max_instances: int | None
) -> list[Mapping[str, Any]]:
    """All reference rows, or a fixed random subset (same for every model) in the original order."""
    if max_instances is None or max_instances >= len(reference):
        return list(reference)
    keep = sorted(random.Random(0).sample(range(len(reference)), max_instances))
    return [reference[i] for i in keep]


def model_outputs(
    model: str, model_id: str, instances: Sequence[Mapping[str, Any]], path: Path, spec: AlpacaEvalSpec
) -> list[dict[str, Any]]:
    """The model's outputs in AlpacaEval's format, generating only instructions missing from `path`."""
    stored = {row["instruction"]: row for row in json.loads(path.read_text())} if path.exists() else {}
    missing = [row for row in instances if row["instruction"] not in stored]
    if missing:
        config = SamplingConfig(
            max_new_tokens=spec.max_new_tokens,
            batch_size=spec.batch_size,
            seed=spec.seed,
            backend=spec.backend,
            dtype=spec.dtype,
        )
        replies = sample_responses(
            model,
            [[{"role": "user", "content": r["instruction"]}] for r in missing],
            config,
            spec.conv_template,
            description="AlpacaEval outputs",
        )
        for row, reply in zip(missing, replies, strict=True):
            stored[row["instruction"]] = {
                "instruction": row["instruction"],
                "output": reply[0],
                "generator": model_id,
                "dataset": row.get("dataset", ""),
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(list(stored.values()), indent=2))
    return [stored[row["instruction"]] for row in instances]


def write_annotator_config(directory: Path, spec: AlpacaEvalSpec) -> Path:
    """`directory/<name>/configs.yaml` (+ prompt) derived from the package's config, and the client config."""
    from alpaca_eval import constants

    source = Path(constants.EVALUATORS_CONFIG_DIR) / spec.base_annotator
    base = next(iter(yaml.safe_load((source / "configs.yaml").read_text()).values()))
    target = directory / ANNOTATOR_NAME
    target.mkdir(parents=True, exist_ok=True)
    prompt = Path(constants.EVALUATORS_CONFIG_DIR) / base["prompt_template"]
    shutil.copyfile(prompt, target / prompt.name)
    client_config = directory / "client_config.yaml"
    client = {"max_retries": spec.judge.max_retries, "timeout": spec.judge.timeout_s}
    if spec.judge.base_url:
        client["base_url"] = spec.judge.base_url
    client_config.write_text(yaml.safe_dump({"default": [client]}))
    completions = dict(base["completions_kwargs"]) | {
        "model_name": spec.judge.model,
        "requires_chatml": True,  # a judge whose name contains "instruct" is still a chat model
        "num_procs": spec.judge.parallel,
        "client_config_path": str(client_config),
        "price_per_token": 0.0,
    }
    if spec.judge.max_tokens:
        completions["max_tokens"] = spec.judge.max_tokens
    config = dict(base) | {
        "prompt_template": f"{ANNOTATOR_NAME}/{prompt.name}",
        "completions_kwargs": completions,
    }
    path = target / "configs.yaml"
    path.write_text(yaml.safe_dump({ANNOTATOR_NAME: config}, sort_keys=False))
    return path


def _metrics(weights_dir: Path, gamed_file: Path):
    """Win rate, plus the length-controlled win rate when its GLM can be fitted (else NaN and the reason)."""
    from alpaca_eval.metrics import get_length_controlled_winrate, get_winrate

    def compute(annotations: Any) -> dict[str, Any]:
        metrics = dict(get_winrate(annotations))
        try:
            with _gamed_file_from(gamed_file):
                metrics |= get_length_controlled_winrate(annotations, save_weights_dir=weights_dir)
        except Exception as err:  # noqa: BLE001 - any failure of the GLM fit is reported, not raised
            reason = f"{type(err).__name__}: {err}"
            return metrics | {
                "length_controlled_winrate": math.nan,
                "lc_standard_error": math.nan,
                "lc_error": reason,
            }
        if not math.isfinite(metrics["length_controlled_winrate"]):
            metrics["lc_error"] = f"the length-controlled fit returned NaN on {len(annotations)} instances"
        return metrics

    return compute


def evaluate(model_dir: str | Path, spec: AlpacaEvalSpec) -> Fitness:
    """Length-controlled AlpacaEval win rate of the model at `model_dir` against the reference outputs."""
    import alpaca_eval

    gamed_file = lc_gamed_file(spec)  # before any generation: without it the score cannot be computed
    model_id = spec.model_id or Path(model_dir).name
    output_dir = (
        Path(spec.output_dir)
        if spec.output_dir
        else (
            Path(model_dir) / "alpaca_eval"
            if Path(model_dir).is_dir()
            else cache_root() / "alpaca_eval" / model_id
        )
    )
    instances = select_instances(json.loads(fetch(spec.reference_outputs).read_text()), spec.max_instances)
    outputs = model_outputs(str(model_dir), model_id, instances, output_dir / "model_outputs.json", spec)
    config = write_annotator_config(output_dir / "annotator", spec)
    leaderboard, annotations = alpaca_eval.evaluate(
        model_outputs=outputs,
        reference_outputs=[dict(r) for r in instances],
        annotators_config=str(config),
        name=model_id,
        output_path=output_dir,
        precomputed_leaderboard=None,
        is_return_instead_of_print=True,
        fn_metric=_metrics(output_dir / "annotator" / "glm_weights", gamed_file),
        caching_path=output_dir / "annotator" / "annotations_cache.json",
        annotation_kwargs={"client_kwargs": {"api_key": spec.judge.api_key()}},
    )
    row = leaderboard.loc[model_id].to_dict()
    preferences = [a.get("preference") for a in annotations]
    unparseable = sum(p is None or (isinstance(p, float) and math.isnan(p)) for p in preferences)
    details = {
        "win_rate": float(row["win_rate"]),
        "win_rate_stderr": float(row["standard_error"]),
        "length_controlled_winrate": float(row["length_controlled_winrate"]),
        "n_annotations": len(preferences),
        "n_unparseable": unparseable,
        "avg_length": int(row["avg_length"]),
        "annotator_config": str(config),
        "outputs_file": str(output_dir / "model_outputs.json"),
    } | ({"lc_error": row["lc_error"]} if isinstance(row.get("lc_error"), str) else {})
    n = len(preferences) - unparseable
    return Fitness(float(row["length_controlled_winrate"]), float(row["lc_standard_error"]), n, details)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m evaluators.alpaca_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint dir, hub id, or smollm2-135m-instruct / tiny"
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--reference-outputs", default=ALPACA_EVAL_REFERENCE_OUTPUTS, help="path or URL")
    parser.add_argument("--max-instances", type=int, default=None)
    parser.add_argument("--base-annotator", default=AlpacaEvalSpec.base_annotator)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--conv-template", default=None, help="FastChat conversation template name")
    parser.add_argument(
        "--lc-gamed-file",
        default=None,
        help=f"local {GAMED_FILE} for the length-controlled fit (default: the Hugging Face cache, else {GAMED_URL})",
    )
    add_judge_arguments(parser, default_model="gpt-4-1106-preview")
    args = parser.parse_args(argv)
    spec = AlpacaEvalSpec(
        judge=judge_from_arguments(args, default_max_tokens=0),
        output_dir=str(args.output_dir),
        model_id=args.model_id,
        reference_outputs=args.reference_outputs,
        max_instances=args.max_instances,
        base_annotator=args.base_annotator,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        conv_template=args.conv_template,
        lc_gamed_file=args.lc_gamed_file,
    )
    try:
        fitness = evaluate(args.model, spec)
    except FitnessUnavailable as err:
        raise SystemExit(f"error: {err}") from None
    print_fitness("AlpacaEval LC win rate", fitness, args.output_dir)
    details = fitness.details
    print(
        f"win rate: {details['win_rate']:.2f} ± {details['win_rate_stderr']:.2f}; "
        f"unparseable annotations: {details['n_unparseable']}/{details['n_annotations']}"
    )
    if "lc_error" in details:
        print(f"length-controlled win rate unavailable: {details['lc_error']}")


if __name__ == "__main__":
    main()
