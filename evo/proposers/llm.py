"""Proposals from any OpenAI-compatible endpoint, through the ``openai`` SDK.

Bounded retries with exponential backoff on rate limits, server errors, timeouts, connection errors and
truncated or empty bodies; tokens and cost are accounted per call. A call that still fails becomes an
``Unparseable`` with the reason, never an exception in the loop."""

from __future__ import annotations

import logging
import os
import random
import time

import openai

from evo.archive import Archive
from evo.config import LLMConfig, ProposerConfig
from evo.context import proposal_messages, repair_messages
from evo.proposers.base import Proposal, Unparseable, Usage
from evo.proposers.parsing import parse_reply

log = logging.getLogger(__name__)

RETRYABLE = (
    openai.APIConnectionError,
    openai.APITimeoutError,
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIResponseValidationError,
    ValueError,  # a truncated or non-JSON body fails to decode
)


class LLMProposer:
    name = "llm"

    def __init__(self, config: LLMConfig, proposers: ProposerConfig, base_url: str, seed: int = 0) -> None:
        self.config = config
        self.proposers = proposers
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(config.api_key_env) or "sk-no-key-needed-for-local-servers",
            timeout=config.timeout_s,
            max_retries=0,  # retries are ours: bounded, with backoff, and covering bad bodies too
        )
        self._random = random.Random(seed)

    def _cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in / 1000 * self.config.price_per_1k_input + tokens_out / 1000 * self.config.price_per_1k_output

    def complete(self, messages: list[dict[str, str]]) -> tuple[str | None, Usage, str | None]:
        """The reply text (None on failure), the usage of every try, and the last error."""
        usage, error = Usage(), None
        for attempt in range(self.config.max_tries):
            try:
                response = self.client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                    seed=self._random.randrange(2**31),
                )
                if response.usage is not None:
                    tin, tout = response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0
                    usage = usage + Usage(tin, tout, self._cost(tin, tout))
                if not response.choices or response.choices[0].message.content is None:
                    raise ValueError("the response had no message content")
                return response.choices[0].message.content, usage, None
            except RETRYABLE as err:
                error = f"{type(err).__name__}: {str(err)[:300]}"
            except openai.APIStatusError as err:  # 4xx other than 429: retrying will not help
                error = f"{type(err).__name__} {err.status_code}: {str(err)[:300]}"
                return None, usage + Usage(faults=(error,)), error
            usage = usage + Usage(faults=(error,))
            delay = min(30.0, 0.5 * 2**attempt) * (0.5 + self._random.random())
            log.warning("LLM call failed (%s), try %d/%d, retrying in %.1fs", error, attempt + 1, self.config.max_tries, delay)
            time.sleep(delay)
        return None, usage, f"gave up after {self.config.max_tries} tries: {error}"

    def _ask(self, messages: list[dict[str, str]], fallback_name: str) -> Proposal | Unparseable:
        text, usage, error = self.complete(messages)
        if text is None:
            return Unparseable(f"no reply from the LLM ({error})", "", usage)
        return parse_reply(text, usage, fallback_name)

    def propose(self, archive: Archive, generation: int) -> Proposal | Unparseable:
        return self._ask(proposal_messages(archive, self.proposers), f"llm_g{generation}")

    def repair(self, proposal: Proposal, error: str) -> Proposal | Unparseable:
        fixed = self._ask(repair_messages(proposal.code, error), proposal.name)
        if isinstance(fixed, Proposal):
            return Proposal(fixed.name, fixed.code, fixed.thought, proposal.parent_ids, None, fixed.usage)
        return fixed
