"""Preference data in every format the project trains on, mapped to one layout.

Formats (detected from the columns of the first row):

- ``preference``: TRL's format, ``prompt``/``chosen``/``rejected``, each a string (standard) or a list of chat
  messages (conversational); TRL's implicit-prompt variant (``chosen``/``rejected`` only) is accepted too.
- ``spin``: SPIN's ``real``/``generated`` conversations (user turns then one assistant turn each); the real answer
  is chosen, the generated one rejected.
- ``granular``: ``prompt``, ``correct_response``, ``incorrect_response``, ``masked_region = [start_char, end_char,
  flag]``; flag 1 puts the span in the chosen (correct) response, -1 in the rejected one.

Every row becomes ``prompt``/``chosen``/``rejected`` plus ``chosen_span``/``rejected_span`` (``[start, end]`` of
the marked characters in that completion, ``[-1, -1]`` for none); the trainer turns spans into token weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset

NO_SPAN = [-1, -1]
FORMATS = ("preference", "spin", "granular")


class DataFormatError(ValueError):
    """A row that cannot be used, with the row number and the field at fault."""

    def __init__(self, row: int, field: str, problem: str) -> None:
        super().__init__(f"row {row}: field {field!r} {problem}")
        self.row, self.field = row, field


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` file (one object per line) or a ``.json`` file (a list of objects)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataFormatError(number, "<line>", f"is not valid JSON: {err.msg}") from None
    elif path.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(
                f"{path}: a .json data file must hold a list of objects, got {type(rows).__name__}"
            )
    else:
        raise ValueError(f"{path}: expected a .jsonl or .json file")
    if not rows:
        raise ValueError(f"{path}: no rows")
    for number, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFormatError(number, "<row>", f"must be a JSON object, got {type(row).__name__}")
    return rows


def detect_format(columns: set[str]) -> str:
    if {"correct_response", "incorrect_response", "masked_region"} <= columns:
        return "granular"
    if {"real", "generated"} <= columns:
        return "spin"
    if {"chosen", "rejected"} <= columns:
        return "preference"
    raise ValueError(
        f"cannot tell the data format from columns {sorted(columns)}: expected prompt/chosen/rejected, "
        "real/generated (SPIN) or prompt/correct_response/incorrect_response/masked_region (granular)"
    )


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in value
    )


def _text_or_messages(row: dict, number: int, field: str) -> str | list[dict]:
    if field not in row:
        raise DataFormatError(number, field, "is missing")
    value = row[field]
    if isinstance(value, str):
        if not value:
            raise DataFormatError(number, field, "is empty")
        return value
    if _is_messages(value) and value:
        return value
    raise DataFormatError(number, field, "must be a non-empty string or a list of {role, content} messages")


def _preference_row(row: dict, number: int) -> dict:
    chosen = _text_or_messages(row, number, "chosen")
    rejected = _text_or_messages(row, number, "rejected")
    if "prompt" in row:
        prompt = _text_or_messages(row, number, "prompt")
    else:
        if not (_is_messages(chosen) and _is_messages(rejected)):
            raise DataFormatError(
                number, "prompt", "is missing (an implicit prompt needs conversational rows)"
            )
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise DataFormatError(number, "chosen", "shares no prompt turns with 'rejected'")
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    if isinstance(prompt, str) != isinstance(chosen, str) or isinstance(chosen, str) != isinstance(
        rejected, str
    ):
        raise DataFormatError(
            number, "prompt", "mixes plain text and chat messages across prompt/chosen/rejected"
        )
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _spin_row(row: dict, number: int) -> dict:
    conversations = {}
    for field in ("real", "generated"):
        value = row.get(field)
        if not _is_messages(value) or len(value) < 2 or value[-1]["role"] != "assistant":
            raise DataFormatError(number, field, "must be a conversation ending with one assistant message")
        conversations[field] = value
    if conversations["real"][:-1] != conversations["generated"][:-1]:
        raise DataFormatError(number, "generated", "must answer the same prompt turns as 'real'")
    return {
        "prompt": conversations["real"][:-1],
        "chosen": conversations["real"][-1:],
        "rejected": conversations["generated"][-1:],
    }


def _granular_row(row: dict, number: int) -> dict:
    prompt = _text_or_messages(row, number, "prompt")
    correct = row.get("correct_response")
    incorrect = row.get("incorrect_response")
    for field, value in (("correct_response", correct), ("incorrect_response", incorrect)):
        if not isinstance(value, str) or not value:
            raise DataFormatError(number, field, "must be a non-empty string")
    region = row.get("masked_region")
    if not (isinstance(region, list) and len(region) == 3 and all(isinstance(v, int) for v in region)):
        raise DataFormatError(number, "masked_region", "must be [start_char, end_char, flag] of integers")
    start, end, flag = region
    if flag not in (1, -1):
        raise DataFormatError(
            number, "masked_region", f"flag must be 1 (chosen) or -1 (rejected), got {flag}"
        )
    target = correct if flag == 1 else incorrect
    if not 0 <= start < end <= len(target):
        raise DataFormatError(
            number, "masked_region", f"span [{start}, {end}) is outside the {len(target)}-character response"
        )
    if isinstance(prompt, list):
        chosen, rejected = (
            [{"role": "assistant", "content": correct}],
            [{"role": "assistant", "content": incorrect}],
        )
    else:
        chosen, rejected = correct, incorrect
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "chosen_span": [start, end] if flag == 1 else NO_SPAN,
        "rejected_span": [start, end] if flag == -1 else NO_SPAN,
    }


_CONVERTERS = {"preference": _preference_row, "spin": _spin_row, "granular": _granular_row}


def normalize_rows(rows: list[dict[str, Any]], fmt: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Detect (or check) the format and map every row to the common layout; raises ``DataFormatError``."""
    fmt = fmt or detect_format(set(rows[0]))
    if fmt not in _CONVERTERS:
        raise ValueError(f"unknown data format {fmt!r}; known: {', '.join(FORMATS)}")
    converted = []
    for number, row in enumerate(rows):
        out = _CONVERTERS[fmt](row, number)
        out.setdefault("chosen_span", NO_SPAN)
        out.setdefault("rejected_span", NO_SPAN)
        converted.append(out)
    return fmt, converted


def load_preference_dataset(path: str | Path, fmt: str | None = None) -> tuple[str, Dataset]:
    """Read a data file of any supported format into a ``datasets.Dataset`` in the common layout."""
    fmt, rows = normalize_rows(read_rows(path), fmt)
    return fmt, Dataset.from_list(rows)


def span_token_weights(token_texts: list[str], span: list[int]) -> list[float]:
    """1.0 for every token overlapping the character span ``[start, end)`` of the concatenated texts, else 0.0;
    all 1.0 when there is no span."""
    start, end = span
    if start < 0:
        return [1.0] * len(token_texts)
    weights, position = [], 0
    for text in token_texts:
        token_start, position = position, position + len(text)
        weights.append(1.0 if token_start < end and position > start and text else 0.0)
    return weights
