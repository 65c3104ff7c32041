"""Few-shot examples for the LLM: the archive's best losses, shown as complete replies it could have written.

Each example is a ``{thought, name, code}`` reply whose code is the loss printed in the grammar's expression
language (``evo.proposers.grammar.sentence``), whoever proposed it (a baseline, the symbolic proposer, an earlier LLM
reply), so that a grammar-constrained model sees sentences of its own language, and any model sees the envelope
it must answer with. Losses that the language cannot say (gates, powers, masks) are skipped."""

from __future__ import annotations

import json
import re

from evo.archive import Archive
from evo.proposers.grammar import THOUGHT_CHARS, sentence
from evo.proposers.loss_expr import Untranslatable, describe
from evo.proposers.parents import Parent, ParentTranslator, breeding_pool

EXAMPLE_REQUEST = "Propose a loss function."
_NOT_IN_THOUGHT = re.compile("[^" + THOUGHT_CHARS[1:])
_NOT_IN_NAME = re.compile(r"[^a-z0-9_]+")


def _name(parent: Parent) -> str:
    name = _NOT_IN_NAME.sub("_", parent.name.lower()).strip("_")[:40]
    return name if len(name) >= 3 and name[0].isalpha() else f"loss_{parent.id}"


def _thought(parent: Parent) -> str:
    score = f"; held-out fitness {parent.fitness:.4f}" if parent.fitness is not None else ""
    text = f"With z = beta * logits, the loss {describe(parent.expr)}{score}."
    return _NOT_IN_THOUGHT.sub(" ", text)[:240]


def example_reply(parent: Parent) -> str | None:
    """The reply that proposes ``parent``'s loss, or None when the grammar's language cannot say it."""
    try:
        code = sentence(parent.expr)
    except Untranslatable:
        return None
    return json.dumps({"thought": _thought(parent), "name": _name(parent), "code": code})


def few_shot_messages(archive: Archive, k: int, translate: ParentTranslator) -> list[dict[str, str]]:
    """Up to ``k`` (request, reply) turns: the fittest archived losses first (then those still training)."""
    turns: list[dict[str, str]] = []
    ranked = sorted(breeding_pool(archive, translate), key=lambda p: (p.rank_key, -p.id), reverse=True)
    for parent in ranked:
        if len(turns) >= 2 * k:
            break
        reply = example_reply(parent)
        if reply is not None:
            turns += [{"role": "user", "content": EXAMPLE_REQUEST}, {"role": "assistant", "content": reply}]
    return turns
