"""DeepSpeed configurations for multi-GPU training, and the accelerate config that launches one.

    zero3.json   ZeRO stage 3: weights, gradients and optimizer states sharded over the GPUs (7B on 8 x 80 GB)
    zero2.json   ZeRO stage 2: gradients and optimizer states sharded; faster when the weights fit on each GPU

Batch size, gradient accumulation, clipping, precision and the bucket sizes are ``"auto"``: the HF Trainer fills
them from the training arguments and the model, so a recipe's ``training`` section stays the only source of
truth. ``zero_allow_untested_optimizer`` lets recipes pick a torch optimizer other than AdamW (SPIN's RMSprop)."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).parent


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def config_path(name_or_path: str) -> Path:
    """A shipped config by name (``zero3``) or any DeepSpeed ``.json`` file by path."""
    shipped = CONFIG_DIR / f"{name_or_path}.json"
    if shipped.exists():
        return shipped
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return path.resolve()
    raise FileNotFoundError(
        f"no DeepSpeed config {name_or_path!r}: name one of {config_names()} or give the path of a .json file"
    )


def load_config(name_or_path: str) -> dict:
    return json.loads(config_path(name_or_path).read_text())


def accelerate_config(num_processes: int, main_process_port: int, deepspeed: str | None) -> dict:
    """The ``accelerate launch --config_file`` contents for one machine: DeepSpeed with the named config, or
    plain DDP (``MULTI_GPU``) when ``deepspeed`` is None. Mixed precision comes from the training arguments."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "machine_rank": 0,
        "num_machines": 1,
        "num_processes": num_processes,
        "main_process_port": main_process_port,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    if deepspeed is None:
        return {**config, "distributed_type": "MULTI_GPU"}
    path = config_path(deepspeed)
    zero3 = json.loads(path.read_text()).get("zero_optimization", {}).get("stage") == 3
    # zero3_init_flag: under ZeRO-3, from_pretrained partitions the weights while it loads them
    return {
        **config,
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {"deepspeed_config_file": str(path), "zero3_init_flag": zero3},
    }
