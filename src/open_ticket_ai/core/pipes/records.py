"""What a run did to the outside world, as pipes report it: actions and decisions.

A pipe that changes something outside the process (a ticket, a note, an HTTP request) reports
an :class:`Action` through ``ctx.record_action``; a pipe that classifies reports a
:class:`Decision` through ``ctx.record_decision``. The run keeps them in order; the ledger
stores them with the run, the summary line counts them, and ``otai runs`` shows them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from open_ticket_ai.core.pipes.result import PipeStatus

__all__ = [
    "NOTE_EXCERPT",
    "Action",
    "ActionKind",
    "Decision",
    "RunDeadline",
    "RunJournal",
    "StepReport",
    "redact_url",
]

NOTE_EXCERPT = 500
"""Characters of a note's text kept in its action."""


class ActionKind(StrEnum):
    """The kinds of change a pipe reports."""

    TICKET_UPDATED = "ticket_updated"
    NOTE_ADDED = "note_added"
    TICKET_CREATED = "ticket_created"
    HTTP_REQUEST = "http_request"


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One change made (or, in a dry run, that would have been made) outside the process.

    Build one with the class methods; ``step`` (the config path of the pipe) and ``dry_run``
    are filled in by the context that records it."""

    kind: ActionKind
    ticket_id: str | None = None
    system: str | None = None
    """The id of the ticket-system service the change went to."""
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    """For ``ticket_updated``: field name -> (value before, value after)."""
    note_id: str | None = None
    marker: str | None = None
    text: str | None = None
    """For ``note_added`` and ``ticket_created``: the first :data:`NOTE_EXCERPT` characters."""
    method: str | None = None
    url: str | None = None
    """For ``http_request``: the URL without credentials."""
    status: int | None = None
    step: str = ""
    dry_run: bool = False

    @classmethod
    def ticket_updated(
        cls, ticket_id: str, system: str | None, changes: Mapping[str, tuple[Any, Any]]
    ) -> Action:
        return cls(
            kind=ActionKind.TICKET_UPDATED,
            ticket_id=ticket_id,
            system=system,
            changes=dict(changes),
        )

    @classmethod
    def note_added(
        cls,
        ticket_id: str,
        system: str | None,
        text: str,
        *,
        note_id: str | None = None,
        marker: str | None = None,
    ) -> Action:
        return cls(
            kind=ActionKind.NOTE_ADDED,
            ticket_id=ticket_id,
            system=system,
            note_id=note_id,
            marker=marker,
            text=text[:NOTE_EXCERPT],
        )

    @classmethod
    def ticket_created(cls, ticket_id: str | None, system: str | None, subject: str) -> Action:
        return cls(
            kind=ActionKind.TICKET_CREATED,
            ticket_id=ticket_id,
            system=system,
            text=subject[:NOTE_EXCERPT],
        )

    @classmethod
    def http_request(cls, method: str, url: str, status: int | None) -> Action:
        return cls(
            kind=ActionKind.HTTP_REQUEST, method=method.upper(), url=redact_url(url), status=status
        )

    def describe(self) -> str:
        """One line for logs and tables."""
        where = f" ticket {self.ticket_id}" if self.ticket_id is not None else ""
        prefix = "would " if self.dry_run else ""
        if self.kind is ActionKind.TICKET_UPDATED:
            changed = ", ".join(f"{k} {b!r} -> {a!r}" for k, (b, a) in self.changes.items())
            return f"{prefix}update{where}: {changed}"
        if self.kind is ActionKind.NOTE_ADDED:
            text = (self.text or "").replace("\n", " ")
            short = text if len(text) <= 60 else text[:57] + "..."
            return f"{prefix}add note{where}: {short!r}"
        if self.kind is ActionKind.TICKET_CREATED:
            created = f" {self.ticket_id}" if self.ticket_id is not None else ""
            return f"{prefix}create ticket{created}: {self.text!r}"
        status = f" -> {self.status}" if self.status is not None else ""
        return f"{prefix}{self.method} {self.url}{status}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One classification: the label a model gave, how sure it was, and what was used.

    ``used`` is the value the pipe went on with: the label, or the fallback when
    ``below_threshold``. ``step`` is filled in by the context that records it."""

    model: str
    label: str
    confidence: float
    top: Sequence[tuple[str, float]] = ()
    """The best labels with their confidence, best first (three at most)."""
    ticket_id: str | None = None
    below_threshold: bool = False
    used: Any = None
    step: str = ""

    def describe(self) -> str:
        where = f"ticket {self.ticket_id}: " if self.ticket_id is not None else ""
        text = f"{where}{self.model} says {self.label!r} ({self.confidence:.2f})"
        if self.below_threshold:
            text += f", below threshold -> {self.used!r}"
        return text


class StepReport(NamedTuple):
    """One step of a finished run: its config path, outcome, time, attempts and message.
    ``items`` lists each ``for_each`` item's status. A named tuple: one is made for every
    step of every run, and a tuple costs a fraction of a frozen dataclass to make."""

    path: str
    step_id: str
    status: PipeStatus
    duration: float
    attempts: int
    message: str
    items: tuple[PipeStatus, ...] = ()


class RunDeadline:
    """A run's deadline: once ``clock()`` (the event loop's) reaches ``at`` no new step or
    ``for_each`` item begins; each one that does not is counted in ``skipped``."""

    __slots__ = ("at", "clock", "limit", "skipped")

    def __init__(self, at: float, limit: float, clock: Callable[[], float]) -> None:
        self.at = at
        self.clock = clock
        self.limit = limit
        """The run's allowance in seconds (for messages)."""
        self.skipped = 0


class RunJournal:
    """What one run did, as it goes: its steps, actions and decisions, whether it is a dry
    run, and its deadline. ``for_each`` iterations share the actions, decisions and deadline
    of their run; their own steps are summed up in the ``for_each`` step's ``items``."""

    __slots__ = ("actions", "deadline", "decisions", "dry_run", "on_retry", "steps")

    def __init__(
        self,
        *,
        dry_run: bool = False,
        actions: list[Action] | None = None,
        decisions: list[Decision] | None = None,
        steps: list[StepReport] | None = None,
        deadline: RunDeadline | None = None,
        on_retry: Callable[[str, int, float, str], None] | None = None,
    ) -> None:
        self.dry_run = dry_run
        self.actions: list[Action] = actions if actions is not None else []
        self.decisions: list[Decision] = decisions if decisions is not None else []
        self.steps: list[StepReport] | None = steps
        """None where steps are not recorded (inside a ``for_each`` iteration)."""
        self.deadline = deadline
        self.on_retry = on_retry
        """Told ``(step path, failed attempt, delay, error)`` before a step is retried."""

    @classmethod
    def recording(
        cls,
        *,
        dry_run: bool = False,
        deadline: RunDeadline | None = None,
        on_retry: Callable[[str, int, float, str], None] | None = None,
    ) -> RunJournal:
        """The journal of a whole run: its steps are recorded."""
        journal = cls.__new__(cls)
        journal.dry_run = dry_run
        journal.actions = []
        journal.decisions = []
        journal.steps = []
        journal.deadline = deadline
        journal.on_retry = on_retry
        return journal

    def for_items(self) -> RunJournal:
        return RunJournal(
            dry_run=self.dry_run,
            actions=self.actions,
            decisions=self.decisions,
            deadline=self.deadline,
            on_retry=self.on_retry,
        )


_SECRET_PARAM = re.compile(r"pass|secret|token|key|auth|sig|session|credential", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without a user name or password, and with the values of query parameters
    that look like credentials (``password``, ``token``, ``api_key``, ...) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
