"""The committed recipes: each parses, every key in it reaches the code that uses it, the published values are the
ones its comments cite, and its DeepSpeed config passes DeepSpeed's own parser after the HF Trainer fills it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evaluators import make_spec
from evo.config import FitnessConfig, SearchConfig, load_config, to_dict
from evo.workers import Placement
from trainer.config import TrainingConfig, TrainRun
from trainer.deepspeed import config_names, config_path
from trainer.deepspeed import load_config as load_deepspeed_config
from trainer.pipelines.baseline_names import PIPELINE_BASELINES
from trainer.trainer import PreferenceConfig

RECIPE_DIR = Path(__file__).resolve().parents[2] / "runs" / "recipes"
RECIPES = sorted(RECIPE_DIR.glob("*.yaml"))
# recipe -> (GPUs it trains on, the published effective batch = GPUs x per-device batch x gradient accumulation)
RECIPE_BATCH = {
    "zephyr-7b-gemma": (8, 128),
    "zephyr-7b-gemma-full": (8, 128),
    "spin-zephyr-7b": (8, 64),
    "spa-zephyr-7b": (4, 96),
    "smollm2-1.7b": (1, 128),
}
DEEPSPEED_RECIPES = ["zephyr-7b-gemma", "zephyr-7b-gemma-full", "spin-zephyr-7b", "spa-zephyr-7b"]
EVALUATOR_BLOCKS = ("verifiable", "proxy", "mt_bench", "alpaca_eval")
RETRAIN_KEYS = {"preset", "seed", "wandb", "training", "data", "fitness", "resources", "retrain"}
RUN = TrainRun(data="train.jsonl", output_dir="out")


def _leaves(value, prefix=()):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*prefix, key))
    else:
        yield prefix, value


def _recipe(path: Path) -> tuple[dict, SearchConfig]:
    return yaml.safe_load(path.read_text()), load_config(path)


def _evaluator_names(config: SearchConfig) -> set[str]:
    fitness = config.fitness
    names = set(fitness.weights) if fitness.kind == "weighted" else {fitness.kind}
    return names | set(config.retrain.evaluators)


def _block(name: str) -> str:
    return "alpaca_eval" if name.startswith("alpaca_eval") else name


def test_the_published_recipes_are_committed():
    assert set(RECIPE_BATCH) <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_key_lands_in_the_config_unchanged(path):
    raw, config = _recipe(path)
    plain = to_dict(config)
    for keys, value in _leaves(raw):
        landed = plain
        for key in keys:
            landed = landed[key]
        assert landed == value, f"{'.'.join(keys)}: recipe says {value!r}, config holds {landed!r}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_training_field_reaches_the_trainer_arguments(path):
    _, config = _recipe(path)
    training = config.training
    assert isinstance(training, TrainingConfig)  # the search embeds trainer.config's, not a copy
    args = PreferenceConfig.from_training(
        training, RUN
    )  # TrainingArguments validate scheduler and optimizer names
    assert (args.beta, args.learning_rate, args.lr_scheduler_type.value, args.warmup_steps) == (
        training.beta,
        training.learning_rate,
        training.lr_scheduler_type,
        training.warmup_ratio,
    )
    assert args.optim.value == training.optim
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (
        training.batch_size,
        training.gradient_accumulation_steps,
    )
    assert (args.num_train_epochs, args.max_steps, args.seed) == (
        training.num_train_epochs,
        training.max_steps,
        training.seed,
    )
    assert (args.max_length, args.max_prompt_length) == (training.max_length, training.max_prompt_length)
    assert args.gradient_checkpointing == training.gradient_checkpointing
    assert (args.loss, args.loss_params) == (training.loss, training.loss_params)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_evaluator_block_is_used_and_accepted_by_its_spec(path):
    _, config = _recipe(path)
    names = _evaluator_names(config)
    for name in names:
        options = dict(getattr(config.fitness, _block(name)))
        if name == "proxy":
            options.setdefault("data", "heldout.jsonl")  # filled from the run's held-out pairs at run time
        make_spec(name, **options)  # an unknown option is a TypeError here
    used = {_block(n) for n in names}
    defaults = FitnessConfig()
    orphans = [
        b for b in EVALUATOR_BLOCKS if getattr(config.fitness, b) != getattr(defaults, b) and b not in used
    ]
    assert not orphans, f"options for evaluators that never run: {orphans}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_data_proposer_and_resource_keys_are_the_ones_their_mode_reads(path):
    raw, config = _recipe(path)
    data = config.data
    assert (data.source == "hub") == (data.hub_dataset is not None)
    if data.source != "hub":
        assert data.max_train_pairs is None and data.hub_heldout_split is None
    if "retrain" in raw:  # a retraining recipe: search-only sections would be silently unused
        assert set(raw) <= RETRAIN_KEYS, f"keys evo.retrain does not read: {sorted(set(raw) - RETRAIN_KEYS)}"
        return
    if "llm" in raw:
        assert config.proposers.llm, "llm settings without the LLM proposer"
    resources = config.resources
    if config.training.deepspeed:
        assert resources.gpus_per_worker >= 1, "DeepSpeed trains on GPU workers"
    assert resources.gpus_per_worker == int(resources.gpus_per_worker), "workers take whole GPUs"


@pytest.mark.parametrize("name", sorted(RECIPE_BATCH))
def test_effective_batch_is_the_published_one(name):
    raw, config = _recipe(RECIPE_DIR / f"{name}.yaml")
    gpus, effective = RECIPE_BATCH[name]
    assert gpus * config.training.batch_size * config.training.gradient_accumulation_steps == effective
    placement = Placement.of(config.resources, config.training)  # one data-parallel worker per GPU
    assert (placement.workers, placement.gpus) == (gpus, gpus)


def test_zephyr_recipe_is_the_discopop_setup():
    _, config = _recipe(RECIPE_DIR / "zephyr-7b-gemma.yaml")
    training = config.training
    assert training.model == "HuggingFaceH4/zephyr-7b-gemma-sft-v0.1"
    assert config.data.hub_dataset == "argilla/dpo-mix-7k"
    assert (training.beta, training.learning_rate, training.lr_scheduler_type) == (0.05, 5e-7, "cosine")
    assert (training.warmup_ratio, training.num_train_epochs) == (0.1, 2)
    assert (training.max_length, training.max_prompt_length) == (1024, 512)
    assert config.fitness.kind == "mt_bench"
    assert (
        config.proposers.llm
        and config.llm.base_url.startswith("https://")
        and config.llm.model.startswith("gpt-4")
    )


def test_full_recipe_retrains_with_the_search_settings_and_adds_alpaca_eval():
    _, search = _recipe(RECIPE_DIR / "zephyr-7b-gemma.yaml")
    _, full = _recipe(RECIPE_DIR / "zephyr-7b-gemma-full.yaml")
    assert full.training == search.training and full.data == search.data
    assert full.fitness.kind == search.fitness.kind
    assert full.retrain.evaluators == ("alpaca_eval_lc",)


def test_spin_and_spa_recipes_are_their_published_setups():
    _, spin = _recipe(RECIPE_DIR / "spin-zephyr-7b.yaml")
    _, spa = _recipe(RECIPE_DIR / "spa-zephyr-7b.yaml")
    assert spin.data.hub_dataset == "UCLA-AGI/SPIN_iter0" and spin.training.optim == "rmsprop"
    assert {"dpo", "spin_hinge"} <= set(
        spin.baselines
    )  # SPIN's logistic (= DPO on these pairs) and hinge losses
    assert (
        spa.data.max_train_pairs == 2000 and spa.seed == 42
    )  # SPA's seed set: 2K pairs after shuffle(seed=42)
    assert (spa.training.max_length, spa.training.max_prompt_length) == (2048, 1024)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_multi_gpu_recipes_name_no_single_process_pipeline_baseline(path):
    _, config = _recipe(path)
    if config.training.deepspeed:  # pipeline baselines train in one process: a 7B model does not fit
        assert not set(config.baselines) & set(PIPELINE_BASELINES)


def _parsed(deepspeed: str, training: TrainingConfig):
    """The DeepSpeed config as the HF Trainer fills its "auto" values, through DeepSpeed's own parser."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.integrations import HfTrainerDeepSpeedConfig

    args = PreferenceConfig.from_training(training, RUN)
    filled = HfTrainerDeepSpeedConfig(load_deepspeed_config(deepspeed))
    filled.trainer_config_process(args)
    model = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=128
        )
    )
    filled.trainer_config_finalize(args, model, num_training_steps=100)  # bucket sizes from the model
    return DeepSpeedConfig(filled.config)  # raises on unknown keys and inconsistent batch sizes


def test_the_deepspeed_recipes_are_the_multi_gpu_ones():
    assert {p.stem for p in RECIPES if _recipe(p)[1].training.deepspeed} == set(DEEPSPEED_RECIPES)


@pytest.mark.parametrize("name", DEEPSPEED_RECIPES)
def test_recipe_deepspeed_config_passes_deepspeeds_parser(name, tmp_path):
    _, config = _recipe(RECIPE_DIR / f"{name}.yaml")
    training = config.training
    parsed = _parsed(training.deepspeed, training)
    assert parsed.zero_optimization_stage == 3
    assert parsed.train_micro_batch_size_per_gpu == training.batch_size
    assert parsed.gradient_accumulation_steps == training.gradient_accumulation_steps
    assert parsed.zero_config.gather_16bit_weights_on_model_save  # save_model writes a whole checkpoint
    placement = Placement.of(config.resources, training)
    assert placement.on_ray_train and placement.deepspeed == training.deepspeed
    assert training.dtype == "bfloat16"  # as the published runs trained


@pytest.mark.parametrize("name", config_names())
def test_shipped_deepspeed_configs_parse_and_reach_the_trainer(name):
    training = TrainingConfig(model="tiny", batch_size=4, gradient_accumulation_steps=2)
    parsed = _parsed(name, training)
    assert parsed.zero_optimization_stage == int(name.removeprefix("zero"))
    assert parsed.train_batch_size == 8
    args = PreferenceConfig.from_training(training, RUN, deepspeed=name)  # what evo.workers' workers get
    assert Path(args.deepspeed) == config_path(name)
    assert PreferenceConfig.from_training(training, RUN).deepspeed is None  # one process: never
