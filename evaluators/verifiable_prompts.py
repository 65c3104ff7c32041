"""Topics and prompt instantiation for the verifiable task.

Training and held-out prompts draw from two disjoint topic lists, so a held-out prompt never mentions a topic the
policy was trained on. Every prompt is a pure function of (family, topic, seed): adding families or topics never
changes the prompts that already existed, which keeps held-out sets comparable across runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evaluators.verifiable_families import FAMILIES, check

TRAIN_TOPICS = tuple(
    "coffee volcano ocean piano bicycle garden library rainbow desert castle robot honey forest glacier "
    "camera bridge tiger chocolate telescope island river mountain dolphin umbrella candle jungle pizza "
    "satellite violin penguin tornado museum airport lighthouse cactus butterfly kitchen compass diamond "
    "elephant festival harbor kangaroo lemon meadow notebook orchestra parrot pyramid quilt sandwich "
    "submarine tomato tractor waterfall wolf yogurt zebra balloon cathedral".split()
)
HELDOUT_TOPICS = tuple(
    "owl bakery comet canyon dragonfly helicopter igloo jellyfish ladder mushroom necklace octopus "
    "pancake raccoon scarf skyscraper snowflake spider squirrel stadium strawberry sunflower swamp teapot "
    "thunderstorm tulip turtle vineyard windmill accordion avalanche bamboo beehive blizzard carousel "
    "chess coral ferry firework hammock".split()
)


@dataclass(frozen=True)
class Prompt:
    """One instantiated instruction: `id` is stable across runs and models, for paired comparisons."""

    id: str
    family: str
    topic: str
    text: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def check(self, response: str) -> bool:
        return check(self.family, response, self.params)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "topic": self.topic,
            "text": self.text,
            "params": dict(self.params),
        }


def make_prompt(family: str, topic: str, seed: int) -> Prompt:
    """The prompt of `family` about `topic`; its parameters are drawn from an RNG keyed by all three inputs."""
    rng = random.Random(f"{seed}:{family}:{topic}")
    text, params = FAMILIES[family].make(topic, rng)
    return Prompt(id=f"{family}/{topic}", family=family, topic=topic, text=text, params=params)


def make_prompts(families: Iterable[str], topics: Iterable[str], seed: int) -> list[Prompt]:
    """All (family x topic) prompts, topic-major so that a prefix of the list covers every family."""
    families = tuple(families)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown verifiable families {unknown}; known: {sorted(FAMILIES)}")
    return [make_prompt(family, topic, seed) for topic in topics for family in families]


def topics(split: str, count: int, start: int = 0) -> tuple[str, ...]:
    """`count` topics of the `train` or `heldout` list from position `start` (a confirmation set takes the
    topics after the selection set's)."""
    pool = {"train": TRAIN_TOPICS, "heldout": HELDOUT_TOPICS}[split]
    if start < 0 or not 0 < count <= len(pool) - start:
        raise ValueError(f"{split} topics: asked for {count} from position {start}, have {len(pool)} in all")
    return pool[start : start + count]
