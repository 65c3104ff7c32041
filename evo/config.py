"""Typed search configuration, loaded from YAML recipes (``runs/recipes/*.yaml``) over a preset.

The ``training`` section is ``trainer.config.TrainingConfig``, the one definition of how a model is trained.

Every knob has a default that runs on a 2-core CPU. Unknown keys are errors, so a typo in a recipe fails loudly
instead of silently running the default."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer.config import TrainingConfig

CONSTRAIN_MODES = ("auto", "grammar", "json_schema", "none")


@dataclass(frozen=True)
class LLMConfig:
    """The LLM proposer. ``base_url: null`` starts llama.cpp's server on loopback with the embedded GGUF.

    ``constrain_mode`` is how replies are held to the ``{thought, name, code}`` envelope: ``grammar`` (a GBNF grammar
    that also limits the code to a safe expression language: llama.cpp servers), ``json_schema`` (the OpenAI
    ``response_format``: the envelope only), ``none`` (the prompt alone), or ``auto`` (grammar for the embedded
    server, none for an endpoint given by ``base_url``). ``few_shot`` archived losses are shown as example
    replies."""

    base_url: str | None = None
    model: str = "smollm2-135m-instruct"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    max_tokens: int = 600
    timeout_s: float = 120.0
    max_tries: int = 4
    price_per_1k_input: float = 0.0
    price_per_1k_output: float = 0.0
    max_cost_usd: float | None = None
    constrain_mode: str = "auto"
    few_shot: int = 2

    def __post_init__(self) -> None:
        if self.constrain_mode not in CONSTRAIN_MODES:
            raise ValueError(
                f"llm.constrain_mode must be one of {', '.join(CONSTRAIN_MODES)}, got {self.constrain_mode!r}"
            )

    @property
    def resolved_constrain_mode(self) -> str:
        """The mode in force: ``auto`` resolved by whether the endpoint is the embedded llama.cpp server."""
        if self.constrain_mode != "auto":
            return self.constrain_mode
        return "grammar" if self.base_url is None else "none"


@dataclass(frozen=True)
class ProposerConfig:
    llm: bool = True
    symbolic: bool = True
    repair_rounds: int = 2
    context_top_k: int = 5
    context_recent: int = 3
    context_failures: int = 3


@dataclass(frozen=True)
class DataConfig:
    """Where training pairs come from: ``verifiable`` (sampled from the policy and labelled by the checkers),
    ``synthetic`` (template pairs, no sampling: the tiny preset), ``file`` (``train_path``/``heldout_path``) or
    ``hub`` (a Hugging Face dataset in TRL's preference format, for connected machines)."""

    source: str = "verifiable"
    train_path: str | None = None
    heldout_path: str | None = None
    hub_dataset: str | None = None
    hub_train_split: str = "train"
    hub_heldout_split: str | None = None
    max_train_pairs: int | None = None  # keep the first N training pairs after a seeded shuffle
    # evaluators.verifiable_data.PairBuildConfig fields. Default: 12 training topics x 12 families = 144 prompts
    # x 4 samples (~5.5 min on 2 cores, ~50 pairs); no proxy topics (the default fitness does not use them).
    pair_build: dict = field(default_factory=lambda: {"n_train_topics": 12, "n_proxy_topics": 0})
    synthetic_pairs: int = 48


@dataclass(frozen=True)
class RungConfig:
    """One fidelity rung (``evo.rungs``): the fraction of the training budget a candidate trains with and the
    fraction of the held-out prompts (the first ones: every rung's items are a subset of the next's) it is scored
    on."""

    budget: float = 1.0
    prompts: float = 1.0

    def __post_init__(self) -> None:
        for name in ("budget", "prompts"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"fitness.rungs: {name} must be a fraction in (0, 1], got {value!r}")


@dataclass(frozen=True)
class BehaviourConfig:
    """Behaviour-level dedup (``evo.behaviour``): a candidate whose per-pair gradient weights match a trained
    candidate's up to scale (cosine >= ``gradient_cosine``) is a duplicate before training; one whose per-item
    outcomes at a rung agree with a candidate's at the same rung (share >= ``outcome_agreement``) while its weights
    are close (cosine >= ``outcome_gradient_cosine``) is a duplicate there (before promotion, or at the full rung)."""

    enabled: bool = True
    gradient_cosine: float = 0.9999
    outcome_agreement: float = 1.0
    outcome_gradient_cosine: float = 0.995


@dataclass(frozen=True)
class FitnessConfig:
    """The fitness fed back: ``verifiable``, ``proxy``, ``mt_bench``, ``alpaca_eval_lc`` or ``weighted`` (a
    weighted sum over ``weights``). Each evaluator's options sit under its own key."""

    kind: str = "verifiable"
    weights: dict = field(default_factory=dict)
    # evaluators.verifiable.VerifiableSpec fields. Default: 16 held-out topics x 12 families = 192 prompts
    # (~90 s of greedy generation per candidate on 2 cores); recipes for GPUs use all 40 topics.
    verifiable: dict = field(default_factory=lambda: {"n_heldout_topics": 16})
    proxy: dict = field(default_factory=dict)
    mt_bench: dict = field(default_factory=dict)
    alpaca_eval: dict = field(default_factory=dict)
    # The baseline the leaderboard's paired deltas compare with: a name in `baselines` (or the same registry loss).
    reference_baseline: str = "dpo"
    # Successive halving (evo.rungs): cheap rung first, the best promote_fraction of each rung go on; the last rung
    # is the full evaluation. Default: one rung (the plain search). bench/rung_correlation.py: the cheap rung 1/4 of
    # the budget on 1/3 of the prompts ranks 12 losses with rho 0.77 by setting apart those that collapse, but gives
    # 8 of the 12 the same score, and a promoted candidate costs 1.36 full ones (results/rung_correlation.json).
    rungs: tuple[RungConfig, ...] = (RungConfig(),)
    promote_fraction: float = 0.5
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)

    def __post_init__(self) -> None:
        if not self.rungs or self.rungs[-1] != RungConfig():
            raise ValueError("fitness.rungs: the last rung must be the full evaluation (budget 1, prompts 1)")
        if not 0 < self.promote_fraction <= 1:
            raise ValueError(f"fitness.promote_fraction must be in (0, 1], got {self.promote_fraction!r}")


@dataclass(frozen=True)
class ResourcesConfig:
    """What one candidate trains on (``evo.workers``) and how many candidates run at once. One worker without
    DeepSpeed trains in the candidate's Ray task, which holds ``num_cpus`` and ``gpus_per_worker``; several workers
    (or DeepSpeed) train through Ray Train, each worker holding ``num_cpus / workers_per_candidate`` CPUs and
    ``gpus_per_worker`` GPUs, and the evaluation runs on rank 0."""

    num_cpus: float = 2.0  # CPUs of one candidate in all
    workers_per_candidate: int = 1  # data-parallel training processes of one candidate
    gpus_per_worker: float = 0.0
    max_in_flight: int = 1
    task_timeout_s: float = 3600.0
    max_failures_in_a_row: int = (
        3  # candidates failing in a row with one infrastructure error stop the run (0: never)
    )


@dataclass(frozen=True)
class RetrainConfig:
    """What ``evo.retrain`` adds at full scale: evaluators run next to ``fitness`` on the retrained model."""

    evaluators: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfirmConfig:
    """``evo.confirm`` after the search (``top_k`` > 0) or on demand: the top K candidates and DPO retrained with
    ``seeds`` fresh training seeds (``seed_base``, ``seed_base + 1``, ...) and scored on a confirmation held-out
    set disjoint from the selection one: the verifiable fitness's next ``heldout_topics`` held-out topics, the
    synthetic data's confirmation topics, or ``heldout_path`` (pairs for the proxy fitness of file/hub data).
    ``redraw_pairs``: when ``data.max_train_pairs`` caps the training set, each seed also draws its own pairs."""

    top_k: int = 2
    seeds: int = 2
    seed_base: int = 1000
    heldout_topics: int = 8
    heldout_path: str | None = None
    redraw_pairs: bool = True


@dataclass(frozen=True)
class SearchConfig:
    preset: str = "default"
    generations: int = 2
    population: int = 3
    baselines: tuple[str, ...] = ("dpo",)
    seed: int = 0
    run_dir: str | None = None
    wandb: bool = False
    llm: LLMConfig = field(default_factory=LLMConfig)
    proposers: ProposerConfig = field(default_factory=ProposerConfig)
    training: TrainingConfig = field(
        default_factory=TrainingConfig
    )  # trainer.config: how every candidate trains
    data: DataConfig = field(default_factory=DataConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    # the policy's size in billions of parameters, for --plan where its config cannot be read offline
    model_params_b: float | None = None

    def __post_init__(self) -> None:
        check_search_baselines(self)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {
        "generations": 2,
        "population": 2,
        "training": {
            "model": "tiny",
            "learning_rate": 1e-3,
            "batch_size": 4,
            "max_steps": 6,
            "max_length": 96,
        },
        "data": {"source": "synthetic", "synthetic_pairs": 24},
        # soft accuracy: every tiny loss ranks all 6 held-out pairs right, so plain accuracy cannot separate them;
        # one rung and no behaviour dedup: today's plain search (tests of the cascade turn them on)
        "fitness": {
            "kind": "proxy",
            "proxy": {"metric": "soft_accuracy"},
            "rungs": [{}],
            "behaviour": {"enabled": False},
        },
        "proposers": {"repair_rounds": 1},
        "llm": {"max_tokens": 400},
        "resources": {"num_cpus": 1.0},
        "confirm": {"top_k": 0},  # tests ask for it (python -m evo.confirm --top K --seeds S)
    },
}


def check_search_baselines(config: SearchConfig) -> None:
    """Every name in ``baselines`` is a procedure or a registry loss, and the reference is among them (ValueError)."""
    # imported here: the loss registry loads torch, which a config alone does not need
    from trainer.pipelines.baseline_names import check_baselines

    check_baselines(config.baselines, config.fitness.reference_baseline)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _build(cls: type, data: dict, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in {where or 'config'}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}.{name}".strip("."))
        elif typing.get_origin(hint) is tuple or (
            isinstance(hint, types.GenericAlias) and hint.__origin__ is tuple
        ):
            item = typing.get_args(hint)[0] if typing.get_args(hint) else None
            if dataclasses.is_dataclass(item):  # e.g. fitness.rungs: a list of mappings
                kwargs[name] = tuple(
                    _build(item, v, f"{where}.{name}[{i}]".strip(".")) for i, v in enumerate(value)
                )
            else:
                kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(config: SearchConfig) -> dict:
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def load_config(
    path: str | Path | None = None, preset: str | None = None, overrides: dict | None = None
) -> SearchConfig:
    """Preset, then the recipe file, then explicit overrides (CLI flags)."""
    recipe: dict = {}
    if path is not None:
        recipe = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(recipe, dict):
            raise ValueError(f"{path}: a recipe must be a YAML mapping")
    name = preset or recipe.get("preset", "default")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    merged = _merge(_merge(PRESETS[name], recipe), overrides or {})
    merged["preset"] = name
    return _build(SearchConfig, merged, "")


def save_config(config: SearchConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
