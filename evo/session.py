"""How a search session starts: Ray (an existing cluster or a local one) and the enabled proposers."""

from __future__ import annotations

import os

import ray

from evo.config import SearchConfig
from evo.proposers.base import Proposer
from evo.proposers.server_watch import ServerWatch
from evo.proposers.symbolic import SymbolicProposer


def init_ray(config: SearchConfig) -> None:
    """Connect to ``RAY_ADDRESS`` when set (an existing cluster), else start a local Ray on this machine."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=max(os.cpu_count() or 1, int(config.resources.num_cpus)),
            include_dashboard=False,
            log_to_driver=False,
        )


def build_proposers(
    config: SearchConfig, llm_base_url: str | None, seed: int, server: ServerWatch | None = None
) -> dict[str, Proposer]:
    """The enabled proposers; ``server`` is the watch over the launcher's own llama.cpp server, if it started one."""
    from evo.proposers.llm import LLMProposer

    proposers: dict[str, Proposer] = {}
    if config.proposers.llm and llm_base_url:
        proposers["llm"] = LLMProposer(config.llm, config.proposers, llm_base_url, seed=seed, server=server)
    if config.proposers.symbolic:
        proposers["symbolic"] = SymbolicProposer(seed=seed)
    if not proposers:
        raise ValueError("no proposer enabled: set proposers.llm or proposers.symbolic")
    return proposers
