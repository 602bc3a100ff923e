"""The unified ticket model every helpdesk adapter speaks."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "NewTicket",
    "Note",
    "Priority",
    "Ticket",
    "TicketChanges",
    "TicketSearch",
    "parse_priority",
]


class Priority(IntEnum):
    """Five levels; each adapter maps them to its system's values."""

    VERY_LOW = 1
    LOW = 2
    NORMAL = 3
    HIGH = 4
    VERY_HIGH = 5

    @classmethod
    def parse(cls, value: Any) -> Priority:
        """Accept 1-5, ``"high"``, ``"very high"``, ``"VERY_HIGH"``, and a helpdesk's own
        names as Open Ticket AI configs pass them through: ``"medium"``, ``"mittel"``, and
        names led by a number like Znuny's and Zammad's (``"3 normal"``, ``"3 Mittel"``,
        ``"2 normal"``: the name decides where it is a level's, else the number)."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            text = value.strip().replace(" ", "_").replace("-", "_").upper()
            if text.isdigit():
                return cls(int(text))
            if text in cls.__members__:
                return cls[text]
            if text in _SYNONYMS:
                return _SYNONYMS[text]
            level, _, name = value.strip().partition(" ")
            if level.isdigit() and name.strip():
                # The name says the level ("2 normal" is Zammad's normal); else the number
                # does, on the five-level scale Znuny and OTOBO use ("3 Mittel").
                named = name.strip().replace(" ", "_").replace("-", "_").upper()
                if named in cls.__members__:
                    return cls[named]
                if named in _SYNONYMS:
                    return _SYNONYMS[named]
                if level in ("1", "2", "3", "4", "5"):
                    return cls(int(level))
        names = ", ".join(m.name.lower().replace("_", " ") for m in cls)
        raise ValueError(
            f"unknown priority {value!r} (use 1-5, one of: {names}, or a helpdesk's name led "
            "by its level, like '3 normal')"
        )

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


_SYNONYMS = {
    "MEDIUM": Priority.NORMAL,
    "SEHR_NIEDRIG": Priority.VERY_LOW,
    "NIEDRIG": Priority.LOW,
    "MITTEL": Priority.NORMAL,
    "HOCH": Priority.HIGH,
    "SEHR_HOCH": Priority.VERY_HIGH,
}
"""Names helpdesks give the five levels (Znuny's German ones among them)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_priority(value: Any) -> Any:
    """A ``priority`` field validator: none stays none, else :meth:`Priority.parse`."""
    return None if value is None else Priority.parse(value)


class Ticket(_Model):
    """A ticket as open-ticket-ai sees it, whatever the helpdesk."""

    id: str
    subject: str = ""
    body: str = ""
    queue: str | None = None
    priority: Priority | None = None
    state: str | None = None
    requester: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)

    _parse_priority = field_validator("priority", mode="before")(parse_priority)

    @property
    def text(self) -> str:
        """Subject and body, as classifiers read them."""
        return f"{self.subject}\n\n{self.body}".strip()


class NewTicket(_Model):
    """What is needed to open a ticket."""

    subject: str = Field(min_length=1)
    body: str = ""
    queue: str
    priority: Priority | None = None
    requester: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)

    _parse_priority = field_validator("priority", mode="before")(parse_priority)


def _id_text(value: Any) -> Any:
    """An id given as a number is its text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TicketChanges(_Model):
    """Fields to change; None leaves a field as it is. ``queue_id``, ``state_id`` and
    ``priority_id`` give one by the system's own id instead of by name (Open Ticket AI's
    ``{id: ...}``), for the adapters whose :attr:`~TicketSystem.takes_ids` name it."""

    subject: str | None = Field(default=None, min_length=1)
    queue: str | None = None
    priority: Priority | None = None
    state: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    queue_id: str | None = None
    state_id: str | None = None
    priority_id: str | None = None

    _parse_priority = field_validator("priority", mode="before")(parse_priority)
    _id_text = field_validator("queue_id", "state_id", "priority_id", mode="before")(_id_text)

    @property
    def empty(self) -> bool:
        return (
            self.subject is None
            and self.queue is None
            and self.priority is None
            and self.state is None
            and not self.custom_fields
            and not self.ids
        )

    @property
    def ids(self) -> dict[str, str]:
        """The fields given by id: ``{"queue": "5", ...}``."""
        given = {"queue": self.queue_id, "state": self.state_id, "priority": self.priority_id}
        return {name: value for name, value in given.items() if value is not None}


class Note(_Model):
    """An internal note (never visible to the customer)."""

    body: str
    subject: str = "open-ticket-ai"
    id: str | None = None
    created: datetime | None = None


class TicketSearch(_Model):
    """Search criteria; every given one must match (``queue_id`` and ``state_id``: by the
    system's own id, for the adapters whose :attr:`~TicketSystem.takes_ids` name them)."""

    queue: str | None = None
    state: str | None = None
    queue_id: str | None = None
    state_id: str | None = None
    updated_since: datetime | None = None
    limit: int = Field(50, ge=1, le=10_000)
    offset: int = Field(0, ge=0)

    _id_text = field_validator("queue_id", "state_id", mode="before")(_id_text)

    @property
    def ids(self) -> dict[str, str]:
        """The criteria given by id: ``{"queue": "5", ...}``."""
        given = {"queue": self.queue_id, "state": self.state_id}
        return {name: value for name, value in given.items() if value is not None}
