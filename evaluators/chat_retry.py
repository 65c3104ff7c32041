"""One chat completion through the ``openai`` SDK with bounded retries and backoff: the LLM proposer's and the
judges' single way of calling an OpenAI-compatible endpoint.

Retried: rate limits, server errors, timeouts, connection errors, bodies that are not a completion's JSON
(truncated, empty, non-JSON) and replies without text. Not retried: any other 4xx status. Each failed try is
kept as one line in ``faults``; the caller decides what a final failure becomes (an unparseable proposal, an
unrated judgment), so nothing here raises for a bad endpoint."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

log = logging.getLogger(__name__)

RETRYABLE = (
    openai.APIConnectionError,  # includes APITimeoutError
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIResponseValidationError,
    ValueError,  # a truncated, empty or non-JSON body fails to decode; a reply without text is raised as one
)


class EmptyReply(ValueError):
    """The completion arrived but held no text."""


def backoff_delay(attempt: int, rng: random.Random, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Seconds to wait after the failed try number ``attempt`` (from 0): exponential, capped, +-50% jitter."""
    return min(cap_s, base_s * 2**attempt) * (0.5 + rng.random())


@dataclass(frozen=True)
class ChatResult:
    """The reply text (None when every try failed), the tokens of every try that was answered, the faults."""

    text: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    faults: tuple[str, ...] = ()
    error: str | None = None  # why ``text`` is None


def chat_with_retries(
    client: openai.OpenAI,
    max_tries: int,
    rng: random.Random,
    before_try: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **request: Any,
) -> ChatResult:
    """``client.chat.completions.create(**request)``, tried up to ``max_tries`` times.

    ``before_try`` runs before each try (the launcher's check that its llama.cpp server is alive); whatever it
    raises propagates."""
    tokens_in = tokens_out = 0
    faults: list[str] = []
    max_tries = max(1, max_tries)
    for attempt in range(max_tries):
        if before_try is not None:
            before_try()
        try:
            response = client.chat.completions.create(**request)
            usage = getattr(response, "usage", None)  # servers may leave it out
            if usage is not None:
                tokens_in += usage.prompt_tokens or 0
                tokens_out += usage.completion_tokens or 0
            text = response.choices[0].message.content if response.choices else None
            if not text or not text.strip():
                raise EmptyReply("the reply held no text")
            return ChatResult(text, tokens_in, tokens_out, tuple(faults))
        except RETRYABLE as err:
            faults.append(f"{type(err).__name__}: {str(err)[:300]}")
        except openai.APIStatusError as err:  # 4xx other than 429: retrying will not help
            faults.append(f"{type(err).__name__} {err.status_code}: {str(err)[:300]}")
            return ChatResult(None, tokens_in, tokens_out, tuple(faults), faults[-1])
        if attempt + 1 < max_tries:
            delay = backoff_delay(attempt, rng)
            log.warning(
                "LLM call failed (%s), try %d/%d, retrying in %.1fs",
                faults[-1],
                attempt + 1,
                max_tries,
                delay,
            )
            sleep(delay)
    return ChatResult(
        None, tokens_in, tokens_out, tuple(faults), f"gave up after {max_tries} tries: {faults[-1]}"
    )
