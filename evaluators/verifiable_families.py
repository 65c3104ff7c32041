"""Prompt families of the verifiable instruction-following task and their programmatic checkers.

A family turns a topic and a seeded RNG into an instruction plus the parameters its checker needs; the checker
decides pass/fail from the response text alone. Parameters are JSON-serializable so that a prompt written to disk
can be re-checked later.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Params = dict[str, Any]

TASKS = (
    "Write a short description of {topic}.",
    "Tell me something interesting about {topic}.",
    "Explain what {topic} is.",
    "Describe {topic} to a child.",
    "Write a few sentences about {topic}.",
)
INCLUDE_WORDS = ("banana", "purple", "rocket", "whisper", "lantern", "marble", "thunder", "velvet")
START_PHRASES = ("Sure thing:", "Here is my answer:", "Great question!", "Okay.")
END_PHRASES = ("That is all.", "The end.", "Thank you for reading.", "Have a nice day!")
JSON_KEYS = ("topic", "summary", "answer", "description")


@dataclass(frozen=True)
class Family:
    """One kind of verifiable instruction."""

    name: str
    make: Callable[[str, random.Random], tuple[str, Params]]
    check: Callable[[str, Mapping[str, Any]], bool]


def _task(topic: str, rng: random.Random) -> str:
    return rng.choice(TASKS).format(topic=topic)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _make_lowercase(topic: str, rng: random.Random) -> tuple[str, Params]:
    return (
        f"{_task(topic, rng)} Your entire answer must be in lowercase letters, with no capital letters.",
        {},
    )


def _check_lowercase(response: str, params: Mapping[str, Any]) -> bool:
    return any(c.isalpha() for c in response) and not any(c.isupper() for c in response)


def _make_uppercase(topic: str, rng: random.Random) -> tuple[str, Params]:
    return f"{_task(topic, rng)} Your entire answer must be in capital letters only.", {}


def _check_uppercase(response: str, params: Mapping[str, Any]) -> bool:
    return any(c.isalpha() for c in response) and not any(c.islower() for c in response)


def _make_max_words(topic: str, rng: random.Random) -> tuple[str, Params]:
    limit = rng.choice((8, 10, 12, 15))
    return f"{_task(topic, rng)} Answer in at most {limit} words.", {"limit": limit}


def _check_max_words(response: str, params: Mapping[str, Any]) -> bool:
    return 1 <= len(_words(response)) <= params["limit"]


def _make_include_word(topic: str, rng: random.Random) -> tuple[str, Params]:
    word = rng.choice(INCLUDE_WORDS)
    return f"{_task(topic, rng)} You must use the word '{word}' in your answer.", {"word": word}


def _check_include_word(response: str, params: Mapping[str, Any]) -> bool:
    return re.search(rf"\b{re.escape(params['word'])}\b", response, re.IGNORECASE) is not None


def _make_exclude_word(topic: str, rng: random.Random) -> tuple[str, Params]:
    return (
        f"{_task(topic, rng)} Do not use the word '{topic}' anywhere in your answer.",
        {"word": topic},
    )


def _check_exclude_word(response: str, params: Mapping[str, Any]) -> bool:
    # A prefix match, so that plurals and other inflections of the forbidden word count as using it.
    used = re.search(rf"\b{re.escape(params['word'])}", response, re.IGNORECASE) is not None
    return bool(_words(response)) and not used


def _make_start_phrase(topic: str, rng: random.Random) -> tuple[str, Params]:
    phrase = rng.choice(START_PHRASES)
    return f"{_task(topic, rng)} Begin your answer with the exact words '{phrase}'", {"phrase": phrase}


def _check_start_phrase(response: str, params: Mapping[str, Any]) -> bool:
    return response.strip().startswith(params["phrase"])


def _make_end_phrase(topic: str, rng: random.Random) -> tuple[str, Params]:
    phrase = rng.choice(END_PHRASES)
    text = f"{_task(topic, rng)} End your answer with the exact phrase '{phrase}' and write nothing after it."
    return text, {"phrase": phrase}


def _check_end_phrase(response: str, params: Mapping[str, Any]) -> bool:
    return response.strip().endswith(params["phrase"])


def _make_json_key(topic: str, rng: random.Random) -> tuple[str, Params]:
    key = rng.choice(JSON_KEYS)
    text = f'{_task(topic, rng)} Answer only with a JSON object that has the key "{key}".'
    return text, {"key": key}


def _check_json_key(response: str, params: Mapping[str, Any]) -> bool:
    text = response.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and params["key"] in value


def _make_arithmetic(topic: str, rng: random.Random) -> tuple[str, Params]:
    a, b = rng.randint(11, 49), rng.randint(2, 9)
    kind = rng.choice(("add", "sub", "mul"))
    if kind == "add":
        story, answer = (
            f"Sam read {a} pages about {topic} and then {b} more pages. How many pages did Sam read?",
            a + b,
        )
    elif kind == "sub":
        story, answer = (
            f"A shop had {a} books about {topic} and sold {b} of them. How many books are left?",
            a - b,
        )
    else:
        story, answer = (
            f"Each of {b} boxes holds {a} pictures of {topic}. How many pictures are there?",
            a * b,
        )
    return f"{story} Answer with the number only.", {"answer": answer}


def _check_arithmetic(response: str, params: Mapping[str, Any]) -> bool:
    numbers = re.findall(r"-?\d[\d,]*", response)
    return bool(numbers) and numbers[0].replace(",", "") == str(params["answer"])


def _make_bullets(topic: str, rng: random.Random) -> tuple[str, Params]:
    count = rng.choice((2, 3, 4))
    text = (
        f"{_task(topic, rng)} Answer with exactly {count} bullet points, "
        "each on its own line starting with '- '."
    )
    return text, {"count": count}


def _check_bullets(response: str, params: Mapping[str, Any]) -> bool:
    bullets = [line for line in response.splitlines() if re.match(r"\s*[-*•]\s+\S", line)]
    return len(bullets) == params["count"]


def _make_no_commas(topic: str, rng: random.Random) -> tuple[str, Params]:
    return f"{_task(topic, rng)} Do not use any commas in your answer.", {}


def _check_no_commas(response: str, params: Mapping[str, Any]) -> bool:
    return bool(_words(response)) and "," not in response


def _make_quotation(topic: str, rng: random.Random) -> tuple[str, Params]:
    return f"{_task(topic, rng)} Wrap your entire answer in double quotation marks.", {}


def _check_quotation(response: str, params: Mapping[str, Any]) -> bool:
    text = response.strip()
    return len(text) >= 2 and text[0] in '"“' and text[-1] in '"”'


def _make_title(topic: str, rng: random.Random) -> tuple[str, Params]:
    text = (
        f"{_task(topic, rng)} Give your answer a title wrapped in double angular brackets, like <<my title>>."
    )
    return text, {}


def _check_title(response: str, params: Mapping[str, Any]) -> bool:
    return re.search(r"<<[^<>\n]*\w[^<>\n]*>>", response) is not None


def _make_end_question(topic: str, rng: random.Random) -> tuple[str, Params]:
    return f"{_task(topic, rng)} End your answer with a question.", {}


def _check_end_question(response: str, params: Mapping[str, Any]) -> bool:
    return response.strip().endswith("?")


def _make_postscript(topic: str, rng: random.Random) -> tuple[str, Params]:
    return f"{_task(topic, rng)} At the end of your answer, add a postscript starting with 'P.S.'", {}


def _check_postscript(response: str, params: Mapping[str, Any]) -> bool:
    return response.strip().find("P.S.") > 0


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("lowercase", _make_lowercase, _check_lowercase),
        Family("uppercase", _make_uppercase, _check_uppercase),
        Family("max_words", _make_max_words, _check_max_words),
        Family("include_word", _make_include_word, _check_include_word),
        Family("exclude_word", _make_exclude_word, _check_exclude_word),
        Family("start_phrase", _make_start_phrase, _check_start_phrase),
        Family("end_phrase", _make_end_phrase, _check_end_phrase),
        Family("json_key", _make_json_key, _check_json_key),
        Family("arithmetic", _make_arithmetic, _check_arithmetic),
        Family("bullets", _make_bullets, _check_bullets),
        Family("no_commas", _make_no_commas, _check_no_commas),
        Family("quotation", _make_quotation, _check_quotation),
        Family("title", _make_title, _check_title),
        Family("end_question", _make_end_question, _check_end_question),
        Family("postscript", _make_postscript, _check_postscript),
    )
}


def check(family: str, response: str, params: Mapping[str, Any]) -> bool:
    """Whether `response` satisfies the instruction of `family` with `params`."""
    return FAMILIES[family].check(response, params)


# The families SmolLM2-135M-Instruct sometimes passes and sometimes fails when sampled (measured pass rates at
# T=0.7 between 0.06 and 0.7): only these yield West-of-N pairs. It never passed lowercase, uppercase or arithmetic
# (0 of 16 samples and 0 of 8 greedy answers each), so they stay available but out of the default.
DEFAULT_FAMILIES: tuple[str, ...] = (
    "max_words",
    "include_word",
    "exclude_word",
    "start_phrase",
    "end_phrase",
    "json_key",
    "bullets",
    "no_commas",
    "quotation",
    "title",
    "end_question",
    "postscript",
)
