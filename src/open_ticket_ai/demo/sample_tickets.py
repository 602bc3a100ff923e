"""A deterministic generator of realistic sample helpdesk tickets in English and German.

Tickets are built from templates and word lists (:mod:`.english`, :mod:`.german`) with a
seeded random generator: the same ``count`` and ``seed`` give the same tickets on every
machine, with no downloads. Queue and priority follow from the text the way they do in a real
helpdesk, with some noise: a ticket may carry a remark about another queue's topic, and its
tone does not always match its priority.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from open_ticket_ai.demo.english import ENGLISH
from open_ticket_ai.demo.german import GERMAN
from open_ticket_ai.demo.language import Language
from open_ticket_ai.tickets.models import NewTicket, Priority

__all__ = [
    "EXPECTED_QUEUE",
    "LANGUAGES",
    "PRIORITIES",
    "QUEUES",
    "SampleTicket",
    "sample_tickets",
]

LANGUAGES: dict[str, Language] = {ENGLISH.code: ENGLISH, GERMAN.code: GERMAN}

QUEUES: dict[str, float] = {"IT Support": 0.4, "Billing": 0.25, "Sales": 0.2, "HR": 0.15}
"""The queues and how often each one occurs."""

PRIORITIES: dict[Priority, float] = {
    Priority.LOW: 0.2,
    Priority.NORMAL: 0.45,
    Priority.HIGH: 0.25,
    Priority.VERY_HIGH: 0.1,
}
"""The priorities and how often each one occurs."""

EXPECTED_QUEUE = "expected_queue"
"""The custom field of a demo ticket opened unsorted: the queue a human would give it, so
``otai tickets stats`` can tell how many the router sent where a human would."""

_NAMES = (
    "Anna Schmidt",
    "Lukas Weber",
    "Maria Fischer",
    "Jonas Becker",
    "Emily Clark",
    "James Miller",
    "Sofia Rossi",
    "Noah Wagner",
    "Lea Hoffmann",
    "Oliver Brown",
)
_LEVELS = list(PRIORITIES)
_VAGUE = 0.06
"""The share of tickets too vague to tell their queue from."""
_ASIDE = 0.2
"""The share of tickets that also mention another queue's topic."""


@dataclass(frozen=True)
class SampleTicket:
    """One generated ticket with the queue and priority a human agent gave it."""

    subject: str
    body: str
    queue: str
    priority: Priority
    language: str

    @property
    def text(self) -> str:
        """Subject and body, as classifiers read them (the same as ``Ticket.text``)."""
        return f"{self.subject}\n\n{self.body}".strip()

    def as_new_ticket(self) -> NewTicket:
        """The ticket as it would be opened in a helpdesk."""
        return NewTicket(
            subject=self.subject,
            body=self.body,
            queue=self.queue,
            priority=self.priority,
            requester=self.body.rsplit("\n", 1)[-1],
        )


def sample_tickets(
    count: int = 400, *, seed: int = 7, languages: Sequence[str] = ("en", "de")
) -> list[SampleTicket]:
    """``count`` tickets, the same ones for the same ``seed``; about 55 % in the first
    language and the rest spread over the others."""
    unknown = [code for code in languages if code not in LANGUAGES]
    if unknown or not languages:
        raise ValueError(f"languages must be some of {sorted(LANGUAGES)} (got {list(languages)})")
    rng = random.Random(seed)
    language_weights = [0.55] + [0.45 / max(1, len(languages) - 1)] * (len(languages) - 1)
    return [
        _ticket(
            rng,
            LANGUAGES[rng.choices(list(languages), language_weights)[0]],
            rng.choices(list(QUEUES), list(QUEUES.values()))[0],
            rng.choices(_LEVELS, list(PRIORITIES.values()))[0],
        )
        for _ in range(count)
    ]


def _ticket(rng: random.Random, language: Language, queue: str, priority: Priority) -> SampleTicket:
    words = language.queues[queue]
    item = rng.choice(words.items)
    number = rng.randint(10_000, 99_999)
    if rng.random() < _VAGUE:
        subject = rng.choice(language.vague_subjects)
        sentences = [rng.choice(language.vague_problems)]
    else:
        subject = rng.choice(words.subjects).format(item=item)
        subject = subject[:1].upper() + subject[1:]
        sentences = [rng.choice(words.problems).format(item=item)]
        if rng.random() < 0.7:
            sentences.append(rng.choice(words.details).format(number=number))
    if priority is Priority.VERY_HIGH and rng.random() < 0.4:
        subject = ("URGENT: " if language.code == "en" else "DRINGEND: ") + subject
    if rng.random() < _ASIDE:
        other = rng.choice([q for q in language.queues if q != queue])
        sentences.append(language.queues[other].aside)
    sentences.append(rng.choice(language.urgency[_tone(rng, priority).label]))

    parts = [rng.choice(language.greetings), " ".join(sentences)]
    signature = f"{rng.choice(language.closings)}\n{rng.choice(_NAMES)}"
    body = "\n\n".join(part for part in (*parts, signature) if part)
    return SampleTicket(subject, body, queue, priority, language.code)


def _tone(rng: random.Random, priority: Priority) -> Priority:
    """The priority the wording suggests: mostly the real one, sometimes a neighbour."""
    if rng.random() < 0.8:
        return priority
    index = _LEVELS.index(priority) + rng.choice((-1, 1))
    return _LEVELS[min(max(index, 0), len(_LEVELS) - 1)]
