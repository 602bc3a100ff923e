"""RequestTrackerTicketSystem: Request Tracker 5 through its REST2 API (``/REST/2.0``).

Searches are TicketSQL, ordered by LastUpdated then id; internal notes are comments. A
ticket's body is the text of its Create transaction, fetched for a whole page of tickets
in two more calls, and remembered: it never changes, so a ticket read again (``get`` after
a search, the read after an update) costs one call. A new comment's id is the ``Location``
RT answers with. The calls each operation makes are listed in docs/ticket-automation.md.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from open_ticket_ai import (
    AnswerLostError,
    NewTicket,
    Note,
    Ticket,
    TicketChanges,
    TicketNotFoundError,
    TicketSearch,
    TicketSystem,
    TicketSystemError,
)
from open_ticket_ai.tickets.adapters.conventions import check_time_zone, parse_priority_map
from open_ticket_ai.tickets.adapters.http import (
    HelpdeskClient,
    HelpdeskParams,
    new_note,
    write_once,
)
from open_ticket_ai.tickets.models import Priority

__all__ = ["DEFAULT_PRIORITIES", "RequestTrackerParams", "RequestTrackerTicketSystem"]

DEFAULT_PRIORITIES = {level: 20 * level - 10 for level in Priority}  # 10, 30, 50, 70, 90
_FIELDS = "Subject,Queue,Status,Priority,Created,LastUpdated,Requestor,CustomFields"
_PAGE = 100  # REST2 never sends more items per page
_UNSET = "1970-01-01T00:00:00Z"  # how REST2 spells a date that is not set
_BODIES_KEPT = 5_000
_BODY_CHARS_KEPT = 20_000_000
"""Ticket bodies remembered: at most this many, of at most this many characters in all,
the least recently used forgotten first."""
_SNAPSHOTS_KEPT = 1_000
_SNAPSHOT_AGE = 10.0
"""Seconds for which the notes read from a ticket stand for the notes it has before a note
is added: AddNotePipe reads them (looking for its marker) just before it adds one."""
_CREATED = re.compile(r"/transaction/(\d+)/?$")
"""The ``Location`` of a comment RT created: ``/REST/2.0/transaction/ID``."""


class RequestTrackerParams(HelpdeskParams):
    """Where RT is and how to log in: an auth ``token`` or ``username`` and ``password``."""

    url: str = Field(min_length=1)
    """RT's base URL, e.g. ``https://rt.example.com`` (REST2 is under ``/REST/2.0``)."""
    token: SecretStr | None = None
    """An auth token (RT: Logged in as > Settings > Auth Tokens)."""
    username: str | None = None
    password: SecretStr | None = None
    priority_map: dict[Priority, int] = Field(default_factory=dict)
    """Unified priority (1-5 or its name) -> RT's number; unnamed levels keep the defaults
    10, 30, 50, 70, 90. RT's numbers read back as the level mapped nearest to them."""
    state_map: dict[str, str] = Field(default_factory=dict)
    """Unified state -> RT status where they differ, e.g. ``{closed: resolved}``."""
    time_zone: str = "UTC"
    """The zone RT reads TicketSQL dates in: the API user's time zone, else RT's $Timezone
    (Debian's package sets it from /etc/timezone; RT's own default is US/Eastern)."""

    _parse_priorities = field_validator("priority_map", mode="before")(parse_priority_map)

    _check_zone = field_validator("time_zone")(check_time_zone)

    @model_validator(mode="after")
    def _one_login(self) -> RequestTrackerParams:
        basic = self.username is not None or self.password is not None
        if self.token is not None and basic:
            raise ValueError("give a token or a username and password, not both")
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ValueError("token is empty (is the variable it comes from set?)")
        if self.token is None and not (self.username and self.password):
            raise ValueError("give a token, or a username and a password")
        return self


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value == _UNSET:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _quote(value: str) -> str:
    """A TicketSQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _page_size(offset: int, limit: int) -> int:
    """The smallest page size >= limit whose one page holds items offset..offset+limit-1
    (RT pages are page-based); 100, RT's most, when none does."""
    for size in range(min(limit, _PAGE), _PAGE + 1):
        if offset // size == (offset + limit - 1) // size:
            return size
    return _PAGE


def _texts(attachments: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Transaction id -> (subject, text): its first text/plain part, else its first text/*."""
    subjects: dict[str, str] = {}
    plain: dict[str, str] = {}
    other: dict[str, str] = {}
    for item in attachments:
        txn, kind = str(item.get("TransactionId")), str(item.get("ContentType"))
        if item.get("Subject"):
            subjects.setdefault(txn, str(item["Subject"]))
        if kind.startswith("text/"):
            (plain if kind == "text/plain" else other).setdefault(txn, str(item.get("Content")))
    txns = subjects.keys() | plain.keys() | other.keys()
    return {t: (subjects.get(t, ""), plain.get(t, other.get(t, ""))) for t in txns}


class RequestTrackerTicketSystem(TicketSystem[RequestTrackerParams]):
    """Tickets of a Request Tracker; notes are comments (never mailed to requestors), custom
    fields are ticket custom fields (by name). Priorities are sent as numbers.

    An update RT answers with 200 but does not apply (an unknown queue or status, a custom
    field the queue lacks) raises TicketSystemError with RT's messages.
    """

    def __init__(self, params: RequestTrackerParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self.priorities = {**DEFAULT_PRIORITIES, **params.priority_map}
        self._rt_status = dict(params.state_map)
        self._state = {rt: state for state, rt in reversed(params.state_map.items())}
        self._zone = ZoneInfo(params.time_zone)
        self._label = f"rt {id!r}" if id else "rt"
        self._client: HelpdeskClient | None = None
        self._bodies_known: OrderedDict[str, str] = OrderedDict()
        """Ticket id -> its body (its Create transaction's text, which RT never changes)."""
        self._body_chars = 0
        self._notes_seen: OrderedDict[str, tuple[float, set[str | None]]] = OrderedDict()
        """Ticket id -> when its notes were last read, and their ids (see add_note)."""

    async def open(self) -> None:
        if self._client is None:
            params = self.params
            token = params.token.get_secret_value() if params.token else None
            password = params.password.get_secret_value() if params.password else ""
            self._client = self.params.client(
                self._label,
                params.url.rstrip("/") + "/REST/2.0",
                headers={"Authorization": f"token {token}"} if token else None,
                auth=None if token else (params.username or "", password),
                on_response=self.answered,
                on_retry=self.retrying,
            )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- the wire ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._exchange(method, path, **kwargs))[0]

    async def _exchange(self, method: str, path: str, **kwargs: Any) -> tuple[Any, httpx.Headers]:
        """The decoded answer and its headers."""
        if self._client is None:
            await self.open()
        assert self._client is not None
        return await self._client.exchange(method, path, **kwargs)

    async def _collect(
        self, method: str, path: str, params: dict[str, Any], body: Any = None, **window: int
    ) -> list[dict[str, Any]]:
        """The items of a collection, ``offset`` and ``limit`` (default: all) translated
        into RT's pages."""
        offset, limit = window.get("offset", 0), window.get("limit", 1 << 30)
        size = _page_size(offset, limit)
        page, skip = offset // size + 1, offset % size
        items: list[dict[str, Any]] = []
        while len(items) < skip + limit:
            query = {**params, "page": page, "per_page": size}
            # A search, even when POSTed: safe to send again.
            answer = await self._call(method, path, params=query, json_body=body, idempotent=True)
            batch = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(batch, list) or not all(
                isinstance(i, dict) and "id" in i for i in batch
            ):
                raise TicketSystemError(
                    f"{self._label}: {method} {path} answered {str(answer)[:300]!r}, "
                    "not a collection with items"
                )
            items += batch
            if len(batch) < size:
                break
            page += 1
        return items[skip : skip + limit]

    async def _tickets(self, query: str, offset: int = 0, limit: int = 1 << 30) -> list[Ticket]:
        params = {
            "query": query,
            "fields": _FIELDS,
            "fields[Queue]": "Name",
            "fields[Requestor]": "EmailAddress",
            "orderby": ["LastUpdated", "id"],
            "order": ["ASC", "ASC"],
        }
        items = await self._collect("GET", "/tickets", params, offset=offset, limit=limit)
        try:
            bodies = await self._bodies([int(item["id"]) for item in items])
            return [self._ticket(item, bodies.get(str(item["id"]), "")) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise TicketSystemError(
                f"{self._label}: GET /tickets answered a ticket it cannot read: {exc!r}"
            ) from None

    async def _history(self, tickets: list[int], types: list[str]) -> list[dict[str, Any]]:
        """The tickets' transactions of these types, oldest first."""
        query = [
            {"field": "ObjectType", "value": "RT::Ticket"},
            {"field": "ObjectId", "operator": "IN", "value": tickets},
            {"field": "Type", "operator": "IN", "value": types},
        ]
        fields = {"fields": "ObjectId,Type,Created", "orderby": "id"}
        return await self._collect("POST", "/transactions", fields, query)

    async def _texts_of(self, transactions: list[int]) -> dict[str, tuple[str, str]]:
        if not transactions:
            return {}
        query = [{"field": "TransactionId", "operator": "IN", "value": transactions}]
        fields = {"fields": "TransactionId,ContentType,Content,Subject", "orderby": "id"}
        return _texts(await self._collect("POST", "/attachments", fields, query))

    async def _bodies(self, tickets: list[int]) -> dict[str, str]:
        """Ticket id -> the text it was opened with (its Create transaction's): remembered,
        else read for all the tickets not remembered in two calls."""
        known = self._bodies_known
        missing = [t for t in tickets if str(t) not in known]
        if missing:
            history = await self._history(missing, ["Create"])
            texts = await self._texts_of([int(t["id"]) for t in history])
            for t in history:
                ticket, body = str(t["ObjectId"]), texts.get(str(t["id"]), ("", ""))[1]
                self._body_chars += len(body) - len(known.get(ticket, ""))
                known[ticket] = body
        bodies = {}
        for ticket in map(str, tickets):
            if ticket in known:
                known.move_to_end(ticket)
                bodies[ticket] = known[ticket]
        while known and (len(known) > _BODIES_KEPT or self._body_chars > _BODY_CHARS_KEPT):
            self._body_chars -= len(known.popitem(last=False)[1])
        return bodies

    def _ticket(self, item: dict[str, Any], body: str) -> Ticket:
        queue, requestors = item.get("Queue"), item.get("Requestor") or []
        requester = None
        if requestors and isinstance(requestors[0], dict):
            requester = requestors[0].get("EmailAddress") or requestors[0].get("id")
        fields = {
            str(cf["name"]): values[0] if len(values) == 1 else values
            for cf in item.get("CustomFields") or []
            if isinstance(cf, dict) and "name" in cf and (values := cf.get("values"))
        }
        status = item.get("Status")
        return Ticket(
            id=str(item["id"]),
            subject=str(item.get("Subject") or ""),
            body=body,
            queue=queue.get("Name") if isinstance(queue, dict) else None,
            priority=self.level(item.get("Priority")),
            state=self._state.get(status, status) if isinstance(status, str) else None,
            requester=requester,
            created=_date(item.get("Created")),
            updated=_date(item.get("LastUpdated")),
            custom_fields=fields,
        )

    def level(self, number: Any) -> Priority | None:
        """The unified level of an RT priority number: the level mapped nearest to it."""
        try:
            value = int(number)
        except (TypeError, ValueError):
            return None
        return min(self.priorities, key=lambda p: (abs(self.priorities[p] - value), p))

    def _key(self, ticket_id: str) -> str:
        if not (ticket_id.isascii() and ticket_id.isdigit()):
            raise TicketNotFoundError(f"{self._label}: no ticket {ticket_id!r} (ids are numbers)")
        return str(int(ticket_id))

    # -- TicketSystem -----------------------------------------------------------------------

    async def search(self, criteria: TicketSearch) -> list[Ticket]:
        clauses = []
        if criteria.queue is not None:
            clauses.append(f"Queue = {_quote(criteria.queue)}")
        if (state := criteria.state) is not None:
            clauses.append(f"Status = {_quote(self._rt_status.get(state, state))}")
        if criteria.updated_since is not None:
            since = criteria.updated_since
            local = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(self._zone)
            clauses.append(f"LastUpdated >= '{local:%Y-%m-%d %H:%M:%S}'")
        query = " AND ".join(clauses) or "id > 0"
        return await self._tickets(query, criteria.offset, criteria.limit)

    async def get(self, ticket_id: str) -> Ticket:
        found = await self._tickets(f"id = {self._key(ticket_id)}", limit=1)
        if not found:
            raise TicketNotFoundError(f"{self._label}: no ticket {ticket_id!r}")
        return found[0]

    def _changes(self, changes: NewTicket | TicketChanges) -> dict[str, Any]:
        state = getattr(changes, "state", None)
        payload = {
            "Subject": changes.subject if isinstance(changes, TicketChanges) else None,
            "Queue": changes.queue,
            "Priority": None if changes.priority is None else self.priorities[changes.priority],
            "Status": None if state is None else self._rt_status.get(state, state),
            "CustomFields": changes.custom_fields or None,
        }
        return {name: value for name, value in payload.items() if value is not None}

    async def create(self, ticket: NewTicket) -> Ticket:
        payload = {"Subject": ticket.subject, "Content": ticket.body, "ContentType": "text/plain"}
        if ticket.requester:
            payload["Requestor"] = ticket.requester
        answer = await self._call("POST", "/ticket", json_body={**payload, **self._changes(ticket)})
        if not isinstance(answer, dict) or "id" not in answer:
            raise TicketSystemError(f"{self._label}: POST /ticket answered {answer!r}, no id")
        return await self.get(str(answer["id"]))

    async def update(self, ticket_id: str, changes: TicketChanges) -> Ticket:
        key = self._key(ticket_id)
        payload = self._changes(changes)
        if not payload:
            return await self.get(ticket_id)
        path = f"/ticket/{key}"
        said = await self._call("PUT", path, json_body=payload, not_found=f"no ticket {key}")
        now = await self.get(ticket_id)
        have = self._changes(
            TicketChanges(
                subject=now.subject, queue=now.queue, priority=now.priority, state=now.state
            )
        )
        missed = [f.lower() for f in payload if f != "CustomFields" and have.get(f) != payload[f]]
        missed += [
            f"custom field {name!r}"
            for name, value in changes.custom_fields.items()
            if str(now.custom_fields.get(name)) != str(value)
        ]
        if missed:
            messages = "; ".join(map(str, said)) if isinstance(said, list) else repr(said)
            raise TicketSystemError(
                f"{self._label}: PUT {path} did not change {', '.join(missed)}: "
                f"{messages or 'RT gave no reason'}"
            )
        return now

    def _seen(self, key: str) -> set[str | None] | None:
        """The ids of the ticket's notes as read within the last ``_SNAPSHOT_AGE`` seconds
        (with the notes this adapter added since)."""
        seen = self._notes_seen.get(key)
        if seen is None or time.monotonic() - seen[0] > _SNAPSHOT_AGE:
            return None
        return seen[1]

    def _saw(self, key: str, notes: set[str | None], *, added: bool = False) -> None:
        """Remember the ids of a ticket's notes as read now, or (``added``) a note added."""
        if added:
            if key in self._notes_seen:
                self._notes_seen[key][1].update(notes)
            return
        self._notes_seen[key] = (time.monotonic(), notes)
        self._notes_seen.move_to_end(key)
        while len(self._notes_seen) > _SNAPSHOTS_KEPT:
            self._notes_seen.popitem(last=False)

    async def add_note(self, ticket_id: str, note: Note) -> Note:
        """One call, ``POST /ticket/:id/comment``: the new comment's id is the ``Location`` RT
        answers with. The notes the ticket had before are only needed when that answer is
        lost (to tell whether the comment landed): the ones read in the last few seconds
        (AddNotePipe has just looked for its marker), else they are read first."""
        key = self._key(ticket_id)
        comment = {"Subject": note.subject, "Content": note.body, "ContentType": "text/plain"}
        seen = self._seen(key)
        # A lost answer's comment is one the ticket did not have before.
        before = set(seen) if seen is not None else {n.id for n in await self.notes(ticket_id)}

        async def send() -> Note:
            path = f"/ticket/{key}/comment"
            try:
                _, headers = await self._exchange("POST", path, json_body=comment)
            except AnswerLostError:
                raise
            except TicketSystemError as exc:
                # RT answers 400 "Message could not be recorded" for a ticket not there.
                if exc.status == 400 and not await self._exists(key):
                    raise TicketNotFoundError(f"{self._label}: no ticket {ticket_id!r}") from None
                raise
            created = _CREATED.search(urlsplit(headers.get("location") or "").path)
            if created is not None:
                added = note.model_copy(update={"id": created.group(1), "created": None})
            elif (found := await landed()) is not None:  # an RT that sends no Location
                added = found
            else:
                raise TicketSystemError(
                    f"{self._label}: POST {path} was accepted, but the comment is not in the "
                    "ticket's history"
                )
            self._saw(key, {added.id}, added=True)  # not mistaken for a later identical one
            return added

        async def landed() -> Note | None:
            return new_note(await self.notes(ticket_id), note, before, strip=True)

        return await write_once(send, landed, attempts=self.params.retries + 1)

    async def _exists(self, key: str) -> bool:
        params = {"query": f"id = {key}", "fields": "id", "per_page": 1}
        answer = await self._call("GET", "/tickets", params=params, idempotent=True)
        return bool(isinstance(answer, dict) and answer.get("items"))

    async def notes(self, ticket_id: str) -> list[Note]:
        history = await self._history([int(self._key(ticket_id))], ["Create", "Comment"])
        if not any(t.get("Type") == "Create" for t in history):
            raise TicketNotFoundError(f"{self._label}: no ticket {ticket_id!r}")
        comments = [t for t in history if t.get("Type") == "Comment"]
        texts = await self._texts_of([int(t["id"]) for t in comments])
        self._saw(self._key(ticket_id), {str(t.get("id")) for t in comments})
        return [
            Note(
                id=str(t.get("id")),
                subject=texts.get(str(t.get("id")), ("", ""))[0],
                body=texts.get(str(t.get("id")), ("", ""))[1],
                created=_date(t.get("Created")),
            )
            for t in comments
        ]

    def ticket_url(self, ticket_id: str) -> str | None:
        return f"{self.params.url.rstrip('/')}/Ticket/Display.html?id={quote(ticket_id)}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.params.url}
