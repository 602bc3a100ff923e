"""ZammadTicketSystem: Zammad through its REST API (``/api/v1``), with an API token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator

from open_ticket_ai import (
    NewTicket,
    Note,
    Ticket,
    TicketChanges,
    TicketNotFoundError,
    TicketSearch,
    TicketSystem,
    TicketSystemError,
)
from open_ticket_ai.tickets.adapters.conventions import parse_priority_map, priority_of
from open_ticket_ai.tickets.adapters.http import (
    HelpdeskClient,
    HelpdeskParams,
    new_note,
    write_once,
)
from open_ticket_ai.tickets.models import Priority

__all__ = [
    "DEFAULT_PRIORITIES",
    "UpstreamZammadParams",
    "ZammadParams",
    "ZammadTicketSystem",
    "ZammadTicketSystemService",
    "priority_of",
]

DEFAULT_PRIORITIES: dict[Priority, str] = {
    Priority.VERY_LOW: "1 low",
    Priority.LOW: "1 low",
    Priority.NORMAL: "2 normal",
    Priority.HIGH: "3 high",
    Priority.VERY_HIGH: "3 high",
}
_MAX_PER_PAGE = 200  # Zammad caps a search page at 200
_CONCURRENCY = 8  # article lists fetched at once for one search page
# Attributes every Zammad ticket has; the others in an expanded ticket are custom fields.
_BUILT_IN_NAMES = (
    "id number title group group_id priority priority_id state state_id organization "
    "organization_id owner owner_id customer customer_id note type time_unit preferences "
    "pending_time escalation_at article_count article_ids created_at created_by created_by_id "
    "updated_at updated_by updated_by_id create_article_type create_article_type_id "
    "create_article_sender create_article_sender_id first_response_at "
    "first_response_escalation_at first_response_in_min first_response_diff_in_min close_at "
    "close_escalation_at close_in_min close_diff_in_min update_escalation_at update_in_min "
    "update_diff_in_min last_close_at last_contact_at last_contact_agent_at "
    "last_contact_customer_at last_owner_update_at ticket_time_accounting_ids "
    "ticket_time_accounting mention_ids shared_draft_ids checklist_id "
    "referencing_checklist_ids tags"
)
_BUILT_IN = frozenset(_BUILT_IN_NAMES.split())


class ZammadParams(HelpdeskParams):
    """Where Zammad is, the token to use, and how this instance names things."""

    url: str = Field(min_length=1)
    """The Zammad instance, e.g. ``https://helpdesk.example.com`` (``/api/v1`` is added)."""
    token: SecretStr = Field(min_length=1)
    """An API access token of an agent (permission ``ticket.agent``)."""
    priority_map: dict[Priority, str] = Field(default_factory=dict)
    """Unified priority (1-5 or its name) -> Zammad priority name; unnamed levels keep the
    defaults (very low and low: ``1 low``, ``2 normal``, high and very high: ``3 high``)."""
    default_customer: str | None = None
    """Customer (login or email) of tickets opened without a requester."""
    new_state: str = "new"
    ticket_defaults: dict[str, Any] = Field(default_factory=dict)
    """More attributes for a new ticket, e.g. ``{owner: agent@example.com}``."""
    custom_fields: list[str] | None = None
    """The ticket attributes read as custom fields; by default every non-built-in one."""

    _parse_priorities = field_validator("priority_map", mode="before")(parse_priority_map)


class ZammadTicketSystem(TicketSystem[ZammadParams]):
    """Tickets of a Zammad instance: queue is the group, the body is the first article, notes
    are internal articles, custom fields are ticket object attributes.

    Zammad's answers ``{"error": ..., "error_human": ...}`` surface in TicketSystemError. Search
    goes through the search index (Elasticsearch), which lags a moment behind writes; it pages
    by page number, and the adapter turns offset and limit into pages and slices them.
    Groups, states and priorities may be given by their ids too (``group_id``, ...).
    """

    takes_ids = frozenset({"queue", "state", "priority"})

    def __init__(self, params: ZammadParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self.priorities = {**DEFAULT_PRIORITIES, **params.priority_map}
        self._label = f"zammad {id!r}" if id else "zammad"
        base = params.url.rstrip("/")
        self._base = base if base.endswith("/api/v1") else f"{base}/api/v1"
        self._client: HelpdeskClient | None = None

    async def open(self) -> None:
        if self._client is None:
            token = self.params.token.get_secret_value()
            self._client = self.params.client(
                self._label,
                self._base,
                headers={"Authorization": f"Token token={token}"},
                on_response=self.answered,
                on_retry=self.retrying,
            )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def _request(
        self, method: str, path: str, ticket_id: str | None = None, **options: Any
    ) -> Any:
        if self._client is None:
            await self.open()
        assert self._client is not None
        not_found = f"no ticket {ticket_id!r}" if ticket_id is not None else None
        try:
            return await self._client.request(method, path, not_found=not_found, **options)
        except TicketNotFoundError:
            raise
        except TicketSystemError as exc:
            if exc.status == 401:
                hint = "the API token was refused: check params.token and that it is not expired"
            elif exc.status == 403:
                hint = "the token's user may not do this (it needs the ticket.agent permission)"
            else:
                raise
            raise TicketSystemError(f"{exc} ({hint})", status=exc.status) from exc

    def _check_kept(self, sent: dict[str, Any], answer: dict[str, Any], call: str) -> None:
        """Zammad drops attributes it does not know, silently: say which."""
        unknown = sorted(set(sent) - set(answer))
        if unknown:
            raise TicketSystemError(
                f"{self._label}: {call}: no ticket attribute {', '.join(map(repr, unknown))}"
                " (create it under Settings > Objects > Ticket)"
            )

    # -- conversions ------------------------------------------------------------------------

    def _ticket(self, raw: dict[str, Any], articles: list[dict[str, Any]]) -> Ticket:
        first = next((a for a in articles if not a.get("internal")), None)
        wanted = self.params.custom_fields
        return Ticket(
            id=str(raw["id"]),
            subject=raw.get("title") or "",
            body=(first or {}).get("body") or "",
            queue=raw.get("group"),
            priority=priority_of(raw.get("priority"), self.priorities),
            state=raw.get("state"),
            requester=raw.get("customer") or None,
            created=_time(raw.get("created_at")),
            updated=_time(raw.get("updated_at")),
            custom_fields={
                key: value
                for key, value in raw.items()
                if (key in wanted if wanted is not None else key not in _BUILT_IN)
                and value is not None
            },
        )

    async def _articles(self, ticket_id: str) -> list[dict[str, Any]]:
        answer = await self._request("GET", f"/ticket_articles/by_ticket/{ticket_id}", ticket_id)
        return [a for a in answer or [] if isinstance(a, dict)]

    async def _with_bodies(self, raws: list[dict[str, Any]]) -> list[Ticket]:
        """Tickets from expanded ones, each with its articles; one that is gone is left out."""
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def one(raw: dict[str, Any]) -> Ticket | None:
            async with limit:
                try:
                    return self._ticket(raw, await self._articles(str(raw["id"])))
                except TicketNotFoundError:
                    return None

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(raw)) for raw in raws]
        except* TicketSystemError as failed:
            raise failed.exceptions[0] from None
        return [ticket for task in tasks if (ticket := task.result()) is not None]

    # -- the interface ----------------------------------------------------------------------

    async def search(self, criteria: TicketSearch) -> list[Ticket]:
        terms = []
        if criteria.queue is not None:
            terms.append(f"group.name:{_quoted(criteria.queue)}")
        if criteria.state is not None:
            terms.append(f"state.name:{_quoted(criteria.state)}")
        if criteria.queue_id is not None:
            terms.append(f"group_id:{_quoted(criteria.queue_id)}")
        if criteria.state_id is not None:
            terms.append(f"state_id:{_quoted(criteria.state_id)}")
        if criteria.updated_since is not None:
            since = criteria.updated_since.astimezone(UTC).isoformat(timespec="milliseconds")
            terms.append(f"updated_at:[{_quoted(since.replace('+00:00', 'Z'))} TO *]")
        start, end = criteria.offset, criteria.offset + criteria.limit
        # One page when offset is a multiple of limit, else pages that cover the window.
        if criteria.limit <= _MAX_PER_PAGE and start % criteria.limit == 0:
            per_page = criteria.limit
        else:
            per_page = min(_MAX_PER_PAGE, end)
        page = start // per_page + 1
        found: list[dict[str, Any]] = []
        skipped = (page - 1) * per_page
        while skipped + len(found) < end:
            answer = await self._request(
                "GET",
                "/tickets/search",
                params={
                    "query": " AND ".join(terms) or "*",
                    "page": page,
                    "per_page": per_page,
                    "sort_by[]": ["updated_at", "id"],
                    "order_by[]": ["asc", "asc"],
                    "expand": "true",
                },
            )
            if not isinstance(answer, list):
                raise TicketSystemError(
                    f"{self._label}: /tickets/search did not expand: {answer!r:.200}"
                )
            batch = [t for t in answer if isinstance(t, dict)]
            found += batch
            if len(batch) < per_page:
                break
            page += 1
        return await self._with_bodies(found[start - skipped : end - skipped])

    async def get(self, ticket_id: str) -> Ticket:
        path = f"/tickets/{_checked(self._label, ticket_id)}"
        raw = await self._request("GET", path, ticket_id, params={"expand": "true"})
        return self._ticket(raw, await self._articles(ticket_id))

    async def create(self, ticket: NewTicket) -> Ticket:
        customer = ticket.requester or self.params.default_customer
        if not customer:
            raise TicketSystemError(
                f"{self._label}: a new ticket needs a customer: give it a requester "
                "or set params.default_customer"
            )
        body: dict[str, Any] = {
            **self.params.ticket_defaults,
            "title": ticket.subject,
            "group": ticket.queue,
            "state": self.params.new_state,
            "priority": self.priorities[ticket.priority or Priority.NORMAL],
            "article": {
                "subject": ticket.subject,
                "body": ticket.body,
                "content_type": "text/plain",
                "type": "note",
                "internal": False,
            },
            **ticket.custom_fields,
        }
        if "@" in customer:  # "guess:" finds the customer by email address, or creates one
            body["customer_id"] = f"guess:{customer}"
        else:
            body["customer"] = customer
        created = await self._request("POST", "/tickets", json_body=body)
        self._check_kept(
            ticket.custom_fields, created, f"POST /tickets (made ticket {created['id']})"
        )
        return await self.get(str(created["id"]))

    async def update(self, ticket_id: str, changes: TicketChanges) -> Ticket:
        path = f"/tickets/{_checked(self._label, ticket_id)}"
        body: dict[str, Any] = dict(changes.custom_fields)
        if changes.subject is not None:
            body["title"] = changes.subject
        if changes.queue is not None:
            body["group"] = changes.queue
        if changes.priority is not None:
            body["priority"] = self.priorities[changes.priority]
        if changes.state is not None:
            body["state"] = changes.state
        for name, given in changes.ids.items():
            key = {"queue": "group_id", "state": "state_id", "priority": "priority_id"}[name]
            body[key] = int(given) if given.isdigit() else given
        if not body:
            return await self.get(ticket_id)
        raw = await self._request("PUT", path, ticket_id, params={"expand": "true"}, json_body=body)
        self._check_kept(changes.custom_fields, raw, f"PUT {path}")
        return self._ticket(raw, await self._articles(ticket_id))

    async def add_note(self, ticket_id: str, note: Note) -> Note:
        key = _checked(self._label, ticket_id)
        known = {n.id for n in await self.notes(key)}

        async def send() -> Note:
            article = await self._request(
                "POST",
                "/ticket_articles",
                key,
                json_body={
                    "ticket_id": int(ticket_id),
                    "subject": note.subject,
                    "body": note.body,
                    "content_type": "text/plain",
                    "type": "note",
                    "internal": True,
                },
            )
            return _note(article)

        async def landed() -> Note | None:
            return new_note(await self.notes(key), note, known)

        return await write_once(send, landed, attempts=self.params.retries + 1)

    async def notes(self, ticket_id: str) -> list[Note]:
        articles = await self._articles(_checked(self._label, ticket_id))
        return [_note(article) for article in articles if article.get("internal")]

    def ticket_url(self, ticket_id: str) -> str | None:
        return f"{self._base.removesuffix('/api/v1')}/#ticket/zoom/{quote(ticket_id)}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self._base}


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _note(article: dict[str, Any]) -> Note:
    return Note(
        id=str(article["id"]),
        subject=article.get("subject") or "",
        body=article.get("body") or "",
        created=_time(article.get("created_at")),
    )


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _checked(label: str, ticket_id: str) -> str:
    if not (ticket_id.isascii() and ticket_id.isdigit()):
        raise TicketNotFoundError(f"{label}: no ticket {ticket_id!r} (ids are numbers)")
    return ticket_id


class UpstreamZammadParams(HelpdeskParams):
    """Open Ticket AI's Zammad service params, as its configs write them."""

    base_url: str = Field(min_length=1)
    access_token: SecretStr = Field(min_length=1)
    verify: bool = True
    priority_map: dict[Priority, str] = Field(default_factory=dict)
    default_customer: str | None = None

    _parse_priorities = field_validator("priority_map", mode="before")(parse_priority_map)

    def as_zammad(self) -> ZammadParams:
        return ZammadParams(
            url=self.base_url,
            token=self.access_token,
            priority_map=self.priority_map,
            default_customer=self.default_customer,
            **{**self.http_settings(), "verify_tls": self.verify and self.verify_tls},
        )


class ZammadTicketSystemService(ZammadTicketSystem):
    """Open Ticket AI's ``zammad:ZammadTicketSystemService``: a :class:`ZammadTicketSystem`
    configured with that project's params (``base_url``, ``access_token``, ``verify``)."""

    Params = UpstreamZammadParams

    def __init__(self, params: UpstreamZammadParams, *, id: str = "") -> None:
        self.upstream_params = params
        super().__init__(params.as_zammad(), id=id)
