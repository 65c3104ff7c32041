"""An LLM judge behind any OpenAI-compatible endpoint, called through the `openai` client.

The API key is read from an environment variable (`OPENAI_API_KEY` unless told otherwise), never from a file; a
judge on a loopback address (a local llama.cpp server) accepts any key, so none is required there.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import openai
from rich.progress import Progress

from evaluators.chat_retry import chat_with_retries

ERROR_OUTPUT = "$ERROR$"  # FastChat's marker for a judgment that failed after all retries
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# FastChat's rating patterns (fastchat/llm_judge/common.py): "[[x]]", else "[x]".
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is and how to call it. `base_url=None` means the OpenAI API (or `OPENAI_BASE_URL`)."""

    model: str = "gpt-4"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 2048
    parallel: int = 4
    max_retries: int = 6
    timeout_s: float = 600.0

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.base_url and urlparse(self.base_url).hostname in LOOPBACK_HOSTS:
            return "unused"  # a local server ignores the key
        raise RuntimeError(f"the judge's API key is read from ${self.api_key_env}, which is not set")

    def client(self) -> openai.OpenAI:
        """A client that does not retry by itself: `ask` retries, with the proposer's bounded backoff."""
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key(),
            max_retries=0,
            timeout=self.timeout_s,
        )


@dataclass(frozen=True)
class JudgeReply:
    """The judge's text, or `ERROR_OUTPUT` and the reason when no usable reply came after every try."""

    text: str
    error: str | None = None


def ask(client: openai.OpenAI, config: JudgeConfig, messages: list[dict[str, str]]) -> JudgeReply:
    """One judgment, tried `config.max_retries + 1` times through errors, truncated or non-JSON bodies and
    empty replies (`evaluators.chat_retry`); a judgment that never came is `ERROR_OUTPUT` with the reason."""
    result = chat_with_retries(
        client,
        config.max_retries + 1,
        random.Random(),
        model=config.model,
        messages=messages,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
    )
    if result.text is None:
        return JudgeReply(ERROR_OUTPUT, result.error)
    return JudgeReply(result.text)


def complete(client: openai.OpenAI, config: JudgeConfig, messages: list[dict[str, str]]) -> str:
    """The judge's reply text, or `ERROR_OUTPUT` when none came (see `ask`)."""
    return ask(client, config, messages).text


def parse_rating(judgment: str) -> float:
    """The rating in a judge's reply, read as FastChat reads it (the first ``[[x]]``, else the first ``[x]``),
    or NaN, the one value for "no rating": a reply without one, or ``ERROR_OUTPUT``."""
    match = RATING.search(judgment) or RATING_BACKUP.search(judgment)
    return float(match.group(1)) if match else math.nan


def run_parallel(
    function: Callable[[Item], Result], items: Sequence[Item], parallel: int, description: str
) -> list[Result]:
    """`function` over `items` on a thread pool, with a progress bar; results in the order of `items`."""
    results: list[Result | None] = [None] * len(items)
    with Progress(transient=True) as progress, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        task = progress.add_task(description, total=len(items))
        futures = {pool.submit(function, item): index for index, item in enumerate(items)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            progress.advance(task)
    return results  # type: ignore[return-value]


def add_judge_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    group = parser.add_argument_group("judge (any OpenAI-compatible endpoint)")
    group.add_argument(
        "--judge-base-url", default=None, help="e.g. http://127.0.0.1:8080/v1 (default: OpenAI)"
    )
    group.add_argument("--judge-model", default=default_model)
    group.add_argument(
        "--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable with the key"
    )
    group.add_argument("--judge-max-tokens", type=int, default=None, help="default: the benchmark's own")
    group.add_argument("--judge-parallel", type=int, default=4, help="concurrent judge requests")
    group.add_argument("--judge-max-retries", type=int, default=6)


def judge_from_arguments(args: argparse.Namespace, default_max_tokens: int) -> JudgeConfig:
    return JudgeConfig(
        model=args.judge_model,
        base_url=args.judge_base_url,
        api_key_env=args.judge_api_key_env,
        max_tokens=args.judge_max_tokens or default_max_tokens,
        parallel=args.judge_parallel,
        max_retries=args.judge_max_retries,
    )
