"""Turn an LLM reply into a proposal: JSON ``{thought, name, code}``, else a fenced code block, else nothing.

Small models wrap JSON in prose, fences or half-finished objects; parsing tries each form in turn and reports
why it gave up, so garbage becomes an ``unparseable`` row with a reason instead of an exception."""

from __future__ import annotations

import json
import re

from evo.proposers.base import Proposal, Unparseable, Usage

_FENCE = re.compile(r"```(?:json|python|py)?\s*\n(.*?)```", re.DOTALL)
_NAME = re.compile(r"[^a-z0-9_]+")


def _clean_name(name: str, fallback: str) -> str:
    cleaned = _NAME.sub("_", name.strip().lower()).strip("_")[:48]
    return cleaned or fallback


def _json_objects(text: str) -> list[dict]:
    """Every decodable JSON object in ``text`` (scanning from each ``{``)."""
    decoder = json.JSONDecoder(strict=False)  # LLMs put raw newlines inside JSON strings
    found = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text[match.start() :])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def parse_reply(
    text: str, usage: Usage = Usage(), fallback_name: str = "candidate"
) -> Proposal | Unparseable:
    if not text or not text.strip():
        return Unparseable("the reply was empty", text or "", usage)
    for obj in _json_objects(text):
        code = obj.get("code")
        if isinstance(code, str) and "def " in code:
            return Proposal(
                name=_clean_name(str(obj.get("name") or ""), fallback_name),
                code=code.strip() + "\n",
                thought=str(obj.get("thought") or "")[:2000],
                usage=usage,
            )
    for block in _FENCE.findall(text):
        for obj in _json_objects(block):
            if isinstance(obj.get("code"), str) and "def " in obj["code"]:
                return parse_reply(block, usage, fallback_name)
        if "def " in block:
            thought = _FENCE.sub("", text).strip()[:2000]
            return Proposal(name=fallback_name, code=block.strip() + "\n", thought=thought, usage=usage)
    if "{" in text and '"code"' in text:
        return Unparseable("the JSON object was truncated or malformed", text, usage)
    for entry in ("def loss_fn", "def token_loss_fn"):  # the two contracts' entry functions
        if entry in text:
            start = text.index(entry)
            return Proposal(name=fallback_name, code=text[start:].strip() + "\n", usage=usage)
    return Unparseable('no JSON object with a "code" field and no fenced code block', text, usage)
