"""Command-line flags generated from a dataclass: one flag per field, named after it, defaulting to its value.

    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainingConfig())      # --model, --learning-rate, ...: defaults from this instance
    add_arguments(parser, TrainRun)              # a class: a field without a default is a required flag
    args = parser.parse_args()
    training = from_arguments(TrainingConfig(), args)

``--learning-rate`` sets ``learning_rate``. Types: ``str``, ``int``, ``float``; ``bool`` as ``--flag`` /
``--no-flag``; ``dict`` as a JSON object; ``X | None`` also takes ``none``; ``Literal[...]`` as choices. The help
text is the field's ``metadata["help"]``. Because the flags are made from the dataclass, a flag and its default
cannot drift from the config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

NONE_WORDS = ("none", "null")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.lower() in NONE_WORDS else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its errors
    return parse_or_none


def _argument(hint: Any) -> dict[str, Any]:
    """argparse keyword arguments for a field of type ``hint``."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"unsupported union {hint}")
        hint, optional = members[0], True
    if typing.get_origin(hint) is typing.Literal:
        return {"choices": list(typing.get_args(hint))}
    if hint is bool:
        if optional:
            raise TypeError("bool | None has no flag form")
        return {"action": argparse.BooleanOptionalAction}
    parsers: dict[Any, Callable[[str], Any]] = {str: str, int: int, float: float, dict: _json_object}
    if hint not in parsers:
        raise TypeError(f"no flag form for fields of type {hint}")
    parse = parsers[hint]
    return {"type": _optional(parse) if optional else parse}


def _fields(defaults: object | type) -> tuple[type, list[dataclasses.Field]]:
    cls = defaults if isinstance(defaults, type) else type(defaults)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    return cls, list(dataclasses.fields(cls))


def _default(defaults: object | type, item: dataclasses.Field) -> Any:
    if not isinstance(defaults, type):
        return getattr(defaults, item.name)
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def add_arguments(
    parser: argparse.ArgumentParser,
    defaults: object | type,
    *,
    omit: Iterable[str] = (),
    title: str | None = None,
) -> None:
    """One flag per field of the dataclass ``defaults`` (an instance, or the class for its field defaults),
    except the fields named in ``omit``."""
    cls, fields = _fields(defaults)
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or cls.__name__)
    skipped = set(omit)
    for item in fields:
        if item.name in skipped:
            continue
        kwargs = _argument(hints[item.name])
        help_text = item.metadata.get("help", "").replace("%", "%%")
        default = _default(defaults, item)
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            help_text = f"{help_text} (default: %(default)s)".strip()
        group.add_argument(flag(item.name), dest=item.name, help=help_text, **kwargs)


def from_arguments(defaults: object | type, args: argparse.Namespace) -> Any:
    """The dataclass of ``defaults`` with every field that has a flag taken from ``args`` (the others keep the
    value of ``defaults``)."""
    cls, fields = _fields(defaults)
    values = {}
    for item in fields:
        if hasattr(args, item.name):
            values[item.name] = getattr(args, item.name)
        else:
            default = _default(defaults, item)
            if default is dataclasses.MISSING:
                raise ValueError(
                    f"{flag(item.name)} was not parsed and {cls.__name__}.{item.name} has no default"
                )
            values[item.name] = default
    return cls(**values)
