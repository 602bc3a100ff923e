"""The shape of one language's templates and word lists for the sample tickets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Language", "QueueWords", "words"]


def words(text: str) -> tuple[str, ...]:
    """``"a, b c, d"`` -> ``("a", "b c", "d")``: keeps long word lists compact."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


@dataclass(frozen=True)
class QueueWords:
    """What tickets of one queue say: ``subjects`` and ``problems`` are templates with
    ``{item}``; ``details`` may hold ``{number}``; ``aside`` is a remark on the queue's topic
    that tickets of other queues sometimes carry, so the data is not perfectly separable."""

    subjects: tuple[str, ...]
    problems: tuple[str, ...]
    items: tuple[str, ...]
    details: tuple[str, ...]
    aside: str


@dataclass(frozen=True)
class Language:
    """Every queue's words in one language, and the phrases shared by all queues."""

    code: str
    queues: Mapping[str, QueueWords]
    urgency: Mapping[str, tuple[str, ...]]
    """Phrases by priority label (``low``, ``normal``, ``high``, ``very high``)."""
    greetings: tuple[str, ...]
    closings: tuple[str, ...]
    vague_subjects: tuple[str, ...]
    vague_problems: tuple[str, ...]
    """Tickets that say too little to tell their queue, as some real ones do."""
