"""Ticket pipes: fetch, update and open tickets, add internal notes: none applied twice."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import Field, field_validator, model_validator

from open_ticket_ai import (
    Action,
    ComponentError,
    NewTicket,
    Note,
    ParamsModel,
    Pipe,
    PipeContext,
    PipeError,
    PipeResult,
    Service,
    ServiceId,
    Ticket,
    TicketChanges,
    TicketSearch,
    TicketSystem,
)
from open_ticket_ai.tickets.adapters.http import write_once
from open_ticket_ai.tickets.models import Priority, parse_priority

__all__ = [
    "AddNotePipe",
    "CreateTicketPipe",
    "FetchTicketsPipe",
    "UpdateTicketPipe",
    "create_once",
    "ticket_data",
]


def ticket_data(ticket: Ticket) -> dict[str, Any]:
    """A ticket as templates see it: JSON-like values, plus ``priority_label``."""
    data = ticket.model_dump(mode="json")
    data["priority_label"] = ticket.priority.label if ticket.priority is not None else None
    return data


_V = TypeVar("_V")


def _ticket_system(ctx: PipeContext, service_id: str) -> TicketSystem[Any]:
    found = ctx.service(service_id, Service)
    if not isinstance(found, TicketSystem):
        raise ComponentError(
            f"{ctx.spec.path}: service {service_id!r} is a {type(found).__name__}, "
            "not a ticket system"
        )
    return found


def _check_ids(
    ctx: PipeContext, system: TicketSystem[Any], ids: dict[str, str], service_id: str
) -> None:
    """Refuse, with the fix, what is given by id to a system that names it only."""
    refused = sorted(name for name in ids if name not in system.takes_ids)
    if refused:
        names = ", ".join(f"{name} {ids[name]!r}" for name in refused)
        raise PipeError(
            f"{ctx.spec.path}: {service_id!r} ({type(system).__name__}) takes "
            f"{' and '.join(refused)} by name only, not by id ({names}): give "
            f"{{name: ...}} instead of {{id: ...}}"
        )


def _label(value: Any) -> Any:
    return value.label if isinstance(value, Priority) else value


def _before_after(current: Ticket, changes: TicketChanges) -> dict[str, tuple[Any, Any]]:
    """Each changed field with its value before and after (priorities by label)."""
    pairs: dict[str, tuple[Any, Any]] = {}
    for name in ("subject", "queue", "priority", "state"):
        after = getattr(changes, name)
        if after is not None:
            pairs[name] = (_label(getattr(current, name)), _label(after))
    for name, after in changes.custom_fields.items():
        pairs[f"custom_fields.{name}"] = (current.custom_fields.get(name), after)
    for name, given in changes.ids.items():  # by the system's id: its name is not known yet
        pairs[name] = (_label(getattr(current, name)), f"id {given}")
    return pairs


def _ticket_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and "id" in value:  # a whole ticket, e.g. `ticket_id: "{{ item }}"`
        return str(value["id"])
    return value


class NamedRef(ParamsModel):
    """A queue, state or priority as Open Ticket AI configs write it: ``{name: ...}``, or
    ``{id: ...}`` (the helpdesk's own id, for the adapters that take one). With both, the
    name is used."""

    name: str | None = Field(default=None, min_length=1)
    id: int | str | None = None

    @model_validator(mode="after")
    def _named(self) -> NamedRef:
        if self.name is None and (self.id is None or str(self.id) == ""):
            raise ValueError("give its name, {name: ...}, or the helpdesk's id, {id: ...}")
        return self


def _name(value: str | NamedRef | None) -> str | None:
    return value.name if isinstance(value, NamedRef) else value


def _by_id(value: object) -> str | None:
    """The id of a ``{id: ...}`` given without a name."""
    if isinstance(value, NamedRef) and value.name is None and value.id is not None:
        return str(value.id)
    return None


class SearchCriteria(ParamsModel):
    """Open Ticket AI's ``ticket_search_criteria``."""

    queue: str | NamedRef | None = None
    state: str | NamedRef | None = None
    limit: int | None = Field(default=None, ge=1, le=10_000)
    offset: int | None = Field(default=None, ge=0)


class FetchParams(ParamsModel):
    ticket_system: ServiceId
    queue: str | None = None
    state: str | None = None
    updated_since: datetime | None = None
    limit: int = Field(50, ge=1, le=10_000)
    offset: int = Field(0, ge=0)
    ticket_search_criteria: SearchCriteria | None = None
    """The search as Open Ticket AI configs write it; the fields above win where both are
    given."""

    def search(self) -> TicketSearch:
        criteria = self.ticket_search_criteria or SearchCriteria()
        given = self.model_fields_set
        return TicketSearch(
            queue=self.queue if self.queue is not None else _name(criteria.queue),
            state=self.state if self.state is not None else _name(criteria.state),
            queue_id=_by_id(criteria.queue) if self.queue is None else None,
            state_id=_by_id(criteria.state) if self.state is None else None,
            updated_since=self.updated_since,
            limit=self.limit if "limit" in given or criteria.limit is None else criteria.limit,
            offset=self.offset if "offset" in given or criteria.offset is None else criteria.offset,
        )


class FetchTicketsPipe(Pipe[FetchParams]):
    """Searches the ticket system. ``data.value`` (and ``data.fetched_tickets``) is the list
    of tickets (dicts: ``id``, ``subject``, ``body``, ``queue``, ``priority``,
    ``priority_label``, ``state``, ...), ``data.count`` their number."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        system = _ticket_system(ctx, p.ticket_system)
        search = p.search()
        _check_ids(ctx, system, search.ids, p.ticket_system)
        tickets = await system.search(search)
        found = [ticket_data(t) for t in tickets]
        # ``fetched_tickets``: the key Open Ticket AI's templates read.
        return PipeResult.success({"value": found, "count": len(found), "fetched_tickets": found})


def _priority_or_named(value: Any) -> Any:
    """A priority (a level, its name, 1-5) or a ``{name: ...}`` for :class:`NamedRef`."""
    return value if isinstance(value, dict) else parse_priority(value)


class UpdatedTicket(ParamsModel):
    """Open Ticket AI's ``updated_ticket``."""

    subject: str | None = Field(default=None, min_length=1)
    queue: str | NamedRef | None = None
    priority: Priority | NamedRef | None = None
    state: str | NamedRef | None = None
    body: str | None = None

    _priority = field_validator("priority", mode="before")(_priority_or_named)

    @model_validator(mode="after")
    def _no_body(self) -> UpdatedTicket:
        if self.body is not None:
            raise ValueError("body: an update changes fields; add text with AddNotePipe")
        return self


class UpdateParams(ParamsModel):
    ticket_system: ServiceId
    ticket_id: str = Field(min_length=1)
    subject: str | None = Field(default=None, min_length=1)
    queue: str | None = None
    priority: Priority | None = None
    state: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    updated_ticket: UpdatedTicket | None = None
    """The changes as Open Ticket AI configs write them; the fields above win where both
    are given."""

    _id = field_validator("ticket_id", mode="before")(_ticket_id)

    _priority = field_validator("priority", mode="before")(parse_priority)

    def wanted(self) -> TicketChanges:
        """Every change asked for, in ours and in ``updated_ticket``."""
        other = self.updated_ticket or UpdatedTicket()
        priority = other.priority if isinstance(other.priority, Priority) else None
        if isinstance(other.priority, NamedRef) and other.priority.name is not None:
            priority = parse_priority(other.priority.name)
        return TicketChanges(
            subject=self.subject if self.subject is not None else other.subject,
            queue=self.queue if self.queue is not None else _name(other.queue),
            priority=self.priority if self.priority is not None else priority,
            state=self.state if self.state is not None else _name(other.state),
            custom_fields=self.custom_fields,
            queue_id=_by_id(other.queue) if self.queue is None else None,
            state_id=_by_id(other.state) if self.state is None else None,
            priority_id=_by_id(other.priority) if self.priority is None else None,
        )


def _differing(wanted: _V | None, current: _V | None) -> _V | None:
    return wanted if wanted is not None and wanted != current else None


class UpdateTicketPipe(Pipe[UpdateParams]):
    """Sets subject, queue, priority, state and custom fields (also given as Open Ticket
    AI's ``updated_ticket``). Only what differs from the ticket as it is now is sent; when
    nothing differs the step is skipped ("already up to date"), so a retried run never
    applies an update twice. ``data.value`` is the ticket as it is now (also when skipped),
    ``data.changed`` the fields changed. The change is recorded as an action with each field
    before and after; in a dry run it is recorded and not sent."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        system = _ticket_system(ctx, p.ticket_system)
        wanted = p.wanted()
        _check_ids(ctx, system, wanted.ids, p.ticket_system)
        current = await system.get(p.ticket_id)
        changes = TicketChanges(
            subject=_differing(wanted.subject, current.subject),
            queue=_differing(wanted.queue, current.queue),
            priority=_differing(wanted.priority, current.priority),
            state=_differing(wanted.state, current.state),
            custom_fields={
                k: v for k, v in wanted.custom_fields.items() if current.custom_fields.get(k) != v
            },
            # By id, what the ticket has now is not known by id: sent (setting it is the same
            # however often it is done).
            queue_id=wanted.queue_id,
            state_id=wanted.state_id,
            priority_id=wanted.priority_id,
        )
        if changes.empty:
            return PipeResult.skip(
                f"ticket {p.ticket_id} is already up to date",
                {"value": ticket_data(current), "changed": []},
            )
        changed = sorted(changes.model_dump(exclude_defaults=True))
        action = Action.ticket_updated(
            p.ticket_id, p.ticket_system, _before_after(current, changes)
        )
        if ctx.dry_run:
            ctx.record_action(action)
            return PipeResult.success(
                {"value": ticket_data(current), "changed": changed},
                f"dry run: ticket {p.ticket_id} not updated",
            )
        updated = await system.update(p.ticket_id, changes)
        ctx.record_action(action)
        return PipeResult.success({"value": ticket_data(updated), "changed": changed})


MARKER_PREFIX = "[otai:"
MARKER_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class UpstreamNote(ParamsModel):
    """Open Ticket AI's ``note``."""

    subject: str | None = None
    body: str = Field(min_length=1)
    content_type: str = "text/plain"


class NoteParams(ParamsModel):
    ticket_system: ServiceId
    ticket_id: str = Field(min_length=1)
    body: str = Field(default="", min_length=0)
    """The note's text (required, here or as ``note.body``)."""
    subject: str = "open-ticket-ai"
    marker: str | None = Field(default=None, pattern=MARKER_PATTERN)
    """Identifies this note: a ticket gets at most one note per marker. Default: a hash of
    the body, so the same note is never added twice."""
    note: UpstreamNote | None = None
    """The note as Open Ticket AI configs write it (subject, body, content_type)."""

    _id = field_validator("ticket_id", mode="before")(_ticket_id)

    @model_validator(mode="after")
    def _some_body(self) -> NoteParams:
        if not self.body and self.note is None:
            raise ValueError("body: is required (or give note: {subject, body})")
        return self

    @property
    def text(self) -> str:
        return self.body or (self.note.body if self.note is not None else "")

    @property
    def title(self) -> str:
        given = "subject" in self.model_fields_set
        if not given and self.note is not None and self.note.subject:
            return self.note.subject
        return self.subject


class AddNotePipe(Pipe[NoteParams]):
    """Adds an internal note (never visible to the customer) ending in a marker line
    ``[otai:MARKER]``. A ticket that already has a note with the marker is skipped, so a
    retried run never adds a second note. ``data.value`` is the note's id. The note is
    recorded as an action; in a dry run it is recorded and not added."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        system = _ticket_system(ctx, p.ticket_system)
        body = p.text
        marker = p.marker or "note-" + hashlib.sha256(body.encode()).hexdigest()[:12]
        tag = f"{MARKER_PREFIX}{marker}]"
        for note in await system.notes(p.ticket_id):
            if tag in note.body:
                return PipeResult.skip(f"ticket {p.ticket_id} already has note {marker!r}")
        if ctx.dry_run:
            ctx.record_action(Action.note_added(p.ticket_id, p.ticket_system, body, marker=marker))
            return PipeResult.success(
                {"value": None, "marker": marker}, f"dry run: no note added to {p.ticket_id}"
            )
        added = await system.add_note(p.ticket_id, Note(subject=p.title, body=f"{body}\n\n{tag}"))
        ctx.record_action(
            Action.note_added(p.ticket_id, p.ticket_system, body, note_id=added.id, marker=marker)
        )
        return PipeResult.success({"value": added.id, "marker": marker})


class CreateParams(ParamsModel):
    ticket_system: ServiceId
    ticket: NewTicket | None = None
    """A whole ticket (e.g. ``"{{ pipe_result('sample') }}"``), or the fields below."""
    subject: str | None = None
    body: str = ""
    queue: str | None = None
    priority: Priority | None = None
    requester: str | None = None
    idempotency_key: str | None = Field(default=None, pattern=MARKER_PATTERN)
    """Identifies the ticket this step opens, written into its first article as
    ``[otai:KEY]``: when the helpdesk's answer to the creation is lost, the ticket is looked
    for by it, and created again only if it is not there. Default: a hash of the ticket's
    fields."""

    _priority = field_validator("priority", mode="before")(parse_priority)


LOOKBACK = timedelta(hours=1)
"""How far back a lost creation is looked for (the helpdesk's clock may differ from ours)."""
_PAGE = 100
_PAGES = 10


async def create_once(system: TicketSystem[Any], ticket: NewTicket, key: str) -> Ticket:
    """Open ``ticket`` with the marker ``[otai:KEY]`` ending its body, once: when the answer
    is lost (AnswerLostError), the queue's tickets updated since just before are searched
    for the marker, and the ticket is created again only if none has it."""
    tag = f"{MARKER_PREFIX}{key}]"
    marked = ticket.model_copy(update={"body": f"{ticket.body}\n\n{tag}" if ticket.body else tag})
    since = datetime.now(UTC) - LOOKBACK

    async def landed() -> Ticket | None:
        for page in range(_PAGES):
            criteria = TicketSearch(
                queue=ticket.queue, updated_since=since, limit=_PAGE, offset=page * _PAGE
            )
            found = await system.search(criteria)
            for candidate in found:
                if tag in candidate.body:
                    return candidate
            if len(found) < _PAGE:
                break
        return None

    return await write_once(lambda: system.create(marked), landed)


def creation_key(ticket: NewTicket) -> str:
    """The default idempotency key of a ticket: a hash of its fields."""
    fields = json.dumps(ticket.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "ticket-" + hashlib.sha256(fields.encode()).hexdigest()[:16]


class CreateTicketPipe(Pipe[CreateParams]):
    """Opens a ticket, once (see ``idempotency_key``). ``data.value`` is the new ticket,
    ``data.key`` its idempotency key. Recorded as an action; in a dry run it is recorded and
    not opened (``data.value`` then has no ``id``)."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        system = _ticket_system(ctx, p.ticket_system)
        if p.ticket is not None:
            new = p.ticket
        elif p.subject is None or p.queue is None:
            return PipeResult.failure("give 'ticket', or 'subject' and 'queue'")
        else:
            new = NewTicket(
                subject=p.subject,
                body=p.body,
                queue=p.queue,
                priority=p.priority,
                requester=p.requester,
            )
        key = p.idempotency_key or creation_key(new)
        if ctx.dry_run:
            ctx.record_action(Action.ticket_created(None, p.ticket_system, new.subject))
            return PipeResult.success(
                {"value": {**new.model_dump(mode="json"), "id": None}, "key": key},
                "dry run: no ticket created",
            )
        created = await create_once(system, new, key)
        ctx.record_action(Action.ticket_created(created.id, p.ticket_system, new.subject))
        return PipeResult.success({"value": ticket_data(created), "key": key})
