"""Proposals from any OpenAI-compatible endpoint, through the ``openai`` SDK.

Each request carries the archive context, ``few_shot`` archived losses as example replies
(``evo.proposers.few_shot``) and the reply constraint of ``LLMConfig.resolved_constrain_mode`` (``evo.proposers.grammar``:
a GBNF grammar for llama.cpp, a JSON-schema ``response_format``, or none).

Bounded retries with exponential backoff on rate limits, server errors, timeouts, connection errors and
truncated or empty bodies (``evaluators.chat_retry``, shared with the judges); tokens and cost are accounted per
call. A call that still fails becomes an ``Unparseable`` with the reason, never an exception in the loop, except
when the launcher's llama.cpp server is gone for good: then ``ProposerUnavailable`` tells the search to go on
without this proposer."""

from __future__ import annotations

import logging
import os
import random

import openai

from evaluators.chat_retry import chat_with_retries
from evo.archive import Archive
from evo.config import LLMConfig, ProposerConfig
from evo.context import proposal_messages, repair_messages
from evo.proposers.base import Proposal, Unparseable, Usage
from evo.proposers.few_shot import few_shot_messages
from evo.proposers.grammar import request_options
from evo.proposers.parents import ParentTranslator
from evo.proposers.parsing import parse_reply
from evo.proposers.server_watch import ServerWatch

log = logging.getLogger(__name__)


class LLMProposer:
    name = "llm"

    def __init__(
        self,
        config: LLMConfig,
        proposers: ProposerConfig,
        base_url: str,
        seed: int = 0,
        server: ServerWatch | None = None,
    ) -> None:
        self.config = config
        self.proposers = proposers
        self.server = (
            server  # the launcher's own llama.cpp server, watched and restarted; None for an endpoint
        )
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(config.api_key_env) or "sk-no-key-needed-for-local-servers",
            timeout=config.timeout_s,
            max_retries=0,  # retries are ours: bounded, with backoff, and covering bad bodies too
        )
        self._random = random.Random(seed)
        self._constraint = request_options(config.resolved_constrain_mode)
        self._translate = ParentTranslator()

    def _cost(self, tokens_in: int, tokens_out: int) -> float:
        return (
            tokens_in / 1000 * self.config.price_per_1k_input
            + tokens_out / 1000 * self.config.price_per_1k_output
        )

    def complete(self, messages: list[dict[str, str]]) -> tuple[str | None, Usage, str | None]:
        """The reply text (None on failure), the usage of every try, and the last error.

        Raises ``ProposerUnavailable`` when the watched server died and could not be restarted."""
        result = chat_with_retries(
            self.client,
            self.config.max_tries,
            self._random,
            before_try=self.server.ensure_serving if self.server else None,
            model=self.config.model,
            messages=messages,
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            seed=self._random.randrange(2**31),
            **self._constraint,
        )
        usage = Usage(
            result.tokens_in,
            result.tokens_out,
            self._cost(result.tokens_in, result.tokens_out),
            result.faults,
        )
        if self.server is not None:
            if result.text is None:
                self.server.ensure_serving()  # a server that died on the last try is restarted, or given up
            else:
                self.server.served()
        return result.text, usage, result.error

    def _ask(self, messages: list[dict[str, str]], fallback_name: str) -> Proposal | Unparseable:
        text, usage, error = self.complete(messages)
        if text is None:
            return Unparseable(f"no reply from the LLM ({error})", "", usage)
        return parse_reply(text, usage, fallback_name)

    def messages(self, archive: Archive) -> list[dict[str, str]]:
        """The proposal request: system prompt, few-shot example turns, then the archive context."""
        system, *rest = proposal_messages(archive, self.proposers)
        return [system, *few_shot_messages(archive, self.config.few_shot, self._translate), *rest]

    def propose(self, archive: Archive, generation: int) -> Proposal | Unparseable:
        return self._ask(self.messages(archive), f"llm_g{generation}")

    def repair(self, proposal: Proposal, error: str) -> Proposal | Unparseable:
        fixed = self._ask(repair_messages(proposal.code, error), proposal.name)
        if isinstance(fixed, Proposal):
            return Proposal(fixed.name, fixed.code, fixed.thought, proposal.parent_ids, None, fixed.usage)
        return fixed
