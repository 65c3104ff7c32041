"""The enabled proposers of a search session (Ray is started by ``evo.workers.init_ray``)."""

from __future__ import annotations

from evo.config import SearchConfig
from evo.proposers.base import Proposer
from evo.proposers.server_watch import ServerWatch
from evo.proposers.symbolic import SymbolicProposer


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
