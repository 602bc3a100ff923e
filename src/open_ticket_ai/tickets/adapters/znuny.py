"""ZnunyTicketSystem: Znuny, OTOBO (and OTRS 6) through a GenericInterface REST web service.

It calls the operations of the sample web service ``GenericTicketConnectorREST`` (SessionCreate,
TicketSearch, TicketGet, TicketCreate, TicketUpdate), routed as the sample routes them unless
``routes`` says otherwise, e.g. ``routes: {TicketSearch: [POST, /TicketSearch]}``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

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
from open_ticket_ai.tickets.adapters.conventions import (
    check_time_zone,
    parse_priority_map,
    priority_of,
)
from open_ticket_ai.tickets.adapters.http import (
    HelpdeskClient,
    HelpdeskParams,
    new_note,
    write_once,
)
from open_ticket_ai.tickets.models import Priority

__all__ = [
    "DEFAULT_ROUTES",
    "OTOBOZnunyTicketSystemService",
    "OtoboZnunyParams",
    "ZnunyParams",
    "ZnunyTicketSystem",
    "priority_of",
]

Operation = Literal["SessionCreate", "TicketSearch", "TicketGet", "TicketCreate", "TicketUpdate"]
DEFAULT_ROUTES: dict[str, tuple[str, str]] = {
    "SessionCreate": ("POST", "/Session"),
    "TicketSearch": ("GET", "/Ticket"),
    "TicketGet": ("GET", "/Ticket/:TicketID"),
    "TicketCreate": ("POST", "/Ticket"),
    "TicketUpdate": ("PATCH", "/Ticket/:TicketID"),
}
DEFAULT_PRIORITIES = {level: f"{level.value} {level.label}" for level in Priority}
# Error codes of TicketGet/TicketUpdate that mean "no such ticket (for this agent)".
_NOT_FOUND = frozenset({"AccessDenied", "NotValidTicketID", "NotTicketData", "WrongStructure"})
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_GET_MANY = 50  # ticket ids in one TicketGet


class ZnunyParams(HelpdeskParams):
    """Where the web service is, whom to log in as, and how this system names things."""

    url: str = Field(min_length=1)
    """The web service: ``.../nph-genericinterface.pl/Webservice/<name>``."""
    username: str = Field(min_length=1)
    """The agent's UserLogin."""
    password: SecretStr = Field(min_length=1)
    auth: Literal["session", "password"] = "session"
    """``session`` trades UserLogin and Password for a SessionID once (SessionCreate, a POST)
    and sends that, renewing it when it expires; ``password`` sends both with every call,
    which puts the password in the query string of GET routes (and web server logs)."""
    routes: dict[Operation, tuple[Literal["GET", "POST", "PUT", "PATCH"], str]] = Field(
        default_factory=dict
    )
    """Operation -> (method, path) where the web service differs from the sample; a path
    without ``:TicketID`` gets the id in the request data."""
    priority_map: dict[Priority, str] = Field(default_factory=dict)
    """Unified priority (1-5 or its name) -> Znuny priority name; unnamed levels keep the
    defaults ``1 very low`` .. ``5 very high``."""
    time_zone: str = "UTC"
    """The system's time zone (OTRSTimeZone): Znuny's times carry none."""
    default_customer_user: str | None = None
    """CustomerUser of tickets opened without a requester (Znuny requires one)."""
    new_state: str = "new"
    ticket_defaults: dict[str, Any] = Field(default_factory=dict)
    """More ``Ticket`` fields for TicketCreate, e.g. ``{Type: Incident, Lock: unlock}``."""

    _parse_priorities = field_validator("priority_map", mode="before")(parse_priority_map)

    _check_zone = field_validator("time_zone")(check_time_zone)


class ZnunyTicketSystem(TicketSystem[ZnunyParams]):
    """Tickets of a Znuny/OTOBO system. Notes are articles not visible to the customer
    (CommunicationChannel ``Internal``); custom fields are ticket dynamic fields.

    An answer with an ``Error`` object (sent with HTTP 200) raises TicketSystemError with its
    ErrorCode and ErrorMessage; access-denied and not-found codes raise TicketNotFoundError.
    Znuny's search has no offset: the adapter asks for offset + limit ids and slices.
    Queues, states and priorities may be given by their ids too (QueueID, StateID, ...).
    """

    takes_ids = frozenset({"queue", "state", "priority"})

    def __init__(self, params: ZnunyParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self.routes = dict(DEFAULT_ROUTES)
        self.routes.update((operation, route) for operation, route in params.routes.items())
        self.priorities = {**DEFAULT_PRIORITIES, **params.priority_map}
        self._zone = ZoneInfo(params.time_zone)
        self._label = f"znuny {id!r}" if id else "znuny"
        self._client: HelpdeskClient | None = None
        self._session: str | None = None
        self._session_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._client is None:
            self._client = self.params.client(
                self._label,
                self.params.url,
                on_response=self.answered,
                on_retry=self.retrying,
            )

    async def close(self) -> None:
        self._session = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- the wire ---------------------------------------------------------------------------

    async def _send(
        self,
        operation: str,
        data: dict[str, Any],
        ticket_id: str | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        if self._client is None:
            await self.open()
        assert self._client is not None
        method, path = self.routes[operation]
        if ticket_id is not None:
            if ":TicketID" in path:
                path = path.replace(":TicketID", quote(ticket_id, safe=","))
            else:
                data = {**data, "TicketID": ticket_id}
        if method == "GET":  # Znuny reads a GET's data from the query string only (a list
            query = {  # as the key repeated)
                k: [str(i) for i in v] if isinstance(v, list) else str(v) for k, v in data.items()
            }
            answer = await self._client.request(method, path, params=query, idempotent=idempotent)
        else:
            answer = await self._client.request(method, path, json_body=data, idempotent=idempotent)
        if not isinstance(answer, dict):
            raise TicketSystemError(
                f"{self._label}: {operation} ({method} {path}) answered {answer!r:.200}, "
                "not an object"
            )
        return answer

    async def _credentials(self) -> dict[str, str]:
        password = self.params.password.get_secret_value()
        login = {"UserLogin": self.params.username, "Password": password}
        if self.params.auth == "password":
            return login
        async with self._session_lock:
            if self._session is None:
                answer = await self._send("SessionCreate", login)
                self._raise_error("SessionCreate", answer)
                session = answer.get("SessionID")
                if not isinstance(session, str) or not session:
                    raise TicketSystemError(f"{self._label}: SessionCreate gave no SessionID")
                self._session = session
            return {"SessionID": self._session}

    async def _call(
        self,
        operation: str,
        data: dict[str, Any],
        ticket_id: str | None = None,
        *,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """Run one operation with credentials; an expired session is renewed once.

        ``idempotent`` (default: every operation but TicketCreate and an update that adds
        an article) says whether it may be sent again after a lost answer."""
        if idempotent is None:
            idempotent = operation != "TicketCreate" and "Article" not in data
        for attempt in (1, 2):
            credentials = await self._credentials()
            answer = await self._send(
                operation, {**data, **credentials}, ticket_id, idempotent=idempotent
            )
            error = answer.get("Error")
            session = credentials.get("SessionID")
            if attempt == 1 and session and _code(error).endswith(".AuthFail"):
                async with self._session_lock:
                    if self._session == session:
                        self._session = None
                continue
            self._raise_error(operation, answer)
            return answer
        raise AssertionError("unreachable")

    def _raise_error(self, operation: str, answer: dict[str, Any]) -> None:
        error = answer.get("Error")
        if error is None:
            return
        code = _code(error)
        message = error.get("ErrorMessage", "") if isinstance(error, dict) else str(error)
        where = f"{self._label}: {operation} failed: {code}: {message}"
        if code.endswith(".AuthFail"):
            hint = f" (check username {self.params.username!r} and its password)"
            raise TicketSystemError(where + hint, status=200)
        backend, _, kind = code.partition(".")
        if backend in ("TicketGet", "TicketUpdate") and kind in _NOT_FOUND:
            raise TicketNotFoundError(where, status=200)
        raise TicketSystemError(where, status=200)

    # -- conversions ------------------------------------------------------------------------

    def _time(self, value: Any) -> datetime | None:
        if not isinstance(value, str) or not value:
            return None
        return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=self._zone)

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        articles = _list(raw.get("Article"))
        fields = {
            field["Name"]: field.get("Value")
            for field in _list(raw.get("DynamicField"))
            if field.get("Value") not in (None, "", [])
        }
        return Ticket(
            id=str(raw["TicketID"]),
            subject=raw.get("Title") or "",
            body=(articles[0].get("Body") or "") if articles else "",
            queue=raw.get("Queue"),
            priority=priority_of(raw.get("Priority"), self.priorities),
            state=raw.get("State"),
            requester=raw.get("CustomerUserID") or None,
            created=self._time(raw.get("Created")),
            updated=self._time(raw.get("Changed")),
            custom_fields=fields,
        )

    async def _fetch(self, ticket_id: str, **options: int) -> list[dict[str, Any]]:
        answer = await self._call("TicketGet", {"DynamicFields": 1, **options}, ticket_id)
        return _list(answer.get("Ticket"))

    def _id(self, ticket_id: str) -> str:
        if not (ticket_id.isascii() and ticket_id.isdigit()):
            raise TicketNotFoundError(f"{self._label}: no ticket {ticket_id!r} (ids are numbers)")
        return ticket_id

    # -- the interface ----------------------------------------------------------------------

    async def search(self, criteria: TicketSearch) -> list[Ticket]:
        data: dict[str, Any] = {
            "SortBy": ["Changed", "TicketNumber"],
            "OrderBy": ["Up", "Up"],
            "Limit": criteria.offset + criteria.limit,
        }
        if criteria.queue is not None:
            data["Queues"] = [criteria.queue]
        if criteria.state is not None:
            data["States"] = [criteria.state]
        if criteria.queue_id is not None:
            data["QueueIDs"] = [criteria.queue_id]
        if criteria.state_id is not None:
            data["StateIDs"] = [criteria.state_id]
        if criteria.updated_since is not None:
            since = criteria.updated_since.astimezone(self._zone)
            data["TicketLastChangeTimeNewerDate"] = since.strftime(_TIME_FORMAT)
        answer = await self._call("TicketSearch", data)
        found = answer.get("TicketID") or []
        ids = [str(i) for i in (found if isinstance(found, list) else [found])]
        ids = ids[criteria.offset : criteria.offset + criteria.limit]
        if not ids:
            return []
        raws: list[dict[str, Any]] = []
        for at in range(0, len(ids), _GET_MANY):  # TicketGet takes many ids, a URL only so many
            chunk = ",".join(ids[at : at + _GET_MANY])
            raws += await self._fetch(chunk, AllArticles=1, ArticleLimit=1)
        by_id = {str(raw.get("TicketID")): raw for raw in raws}
        return [self._ticket(by_id[i]) for i in ids if i in by_id]

    async def get(self, ticket_id: str) -> Ticket:
        raws = await self._fetch(self._id(ticket_id), AllArticles=1, ArticleLimit=1)
        if not raws:
            raise TicketNotFoundError(f"{self._label}: no ticket {ticket_id!r}")
        return self._ticket(raws[0])

    async def create(self, ticket: NewTicket) -> Ticket:
        customer = ticket.requester or self.params.default_customer_user
        if not customer:
            raise TicketSystemError(
                f"{self._label}: a new ticket needs a customer user: give it a requester "
                "or set params.default_customer_user"
            )
        fields = {
            **self.params.ticket_defaults,
            "Title": ticket.subject,
            "Queue": ticket.queue,
            "State": self.params.new_state,
            "Priority": self.priorities[ticket.priority or Priority.NORMAL],
            "CustomerUser": customer,
        }
        # Znuny refuses an article without a body
        article = _article(ticket.subject, ticket.body or ticket.subject, internal=False)
        if ticket.requester:
            article["From"] = ticket.requester
        data: dict[str, Any] = {"Ticket": fields, "Article": article}
        if ticket.custom_fields:
            data["DynamicField"] = _dynamic_fields(ticket.custom_fields)
        answer = await self._call("TicketCreate", data)
        return await self.get(str(answer["TicketID"]))

    async def update(self, ticket_id: str, changes: TicketChanges) -> Ticket:
        self._id(ticket_id)
        fields: dict[str, Any] = {}
        if changes.subject is not None:
            fields["Title"] = changes.subject
        if changes.queue is not None:
            fields["Queue"] = changes.queue
        if changes.priority is not None:
            fields["Priority"] = self.priorities[changes.priority]
        if changes.state is not None:
            fields["State"] = changes.state
        for name, given in changes.ids.items():  # QueueID, StateID, PriorityID
            fields[f"{name.capitalize()}ID"] = given
        data: dict[str, Any] = {"Ticket": fields} if fields else {}
        if changes.custom_fields:
            data["DynamicField"] = _dynamic_fields(changes.custom_fields)
        if data:
            await self._call("TicketUpdate", data, ticket_id)
        return await self.get(ticket_id)

    async def add_note(self, ticket_id: str, note: Note) -> Note:
        key = self._id(ticket_id)
        article = _article(note.subject, note.body, internal=True)
        known = {n.id for n in await self.notes(key)}

        async def send() -> Note:
            answer = await self._call("TicketUpdate", {"Article": article}, key)
            return Note(id=str(answer.get("ArticleID", "")), subject=note.subject, body=note.body)

        async def landed() -> Note | None:
            return new_note(await self.notes(key), note, known, subject=False)

        return await write_once(send, landed, attempts=self.params.retries + 1)

    async def notes(self, ticket_id: str) -> list[Note]:
        raws = await self._fetch(self._id(ticket_id), AllArticles=1)
        articles = _list(raws[0].get("Article")) if raws else []
        return [
            Note(
                id=str(article.get("ArticleID")),
                subject=article.get("Subject") or "",
                body=article.get("Body") or "",
                created=self._time(article.get("CreateTime")),
            )
            for article in articles
            if str(article.get("IsVisibleForCustomer")) == "0"
        ]

    def ticket_url(self, ticket_id: str) -> str | None:
        base, _, _ = self.params.url.partition("/nph-genericinterface.pl")
        return f"{base}/index.pl?Action=AgentTicketZoom;TicketID={quote(ticket_id)}"

    def describe(self) -> dict[str, Any]:
        params = self.params
        return {**super().describe(), "url": params.url, "user": params.username}


def _code(error: Any) -> str:
    return str(error.get("ErrorCode", "")) if isinstance(error, dict) else ""


def _list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [item for item in value or [] if isinstance(item, dict)]


def _dynamic_fields(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Name": name, "Value": value} for name, value in values.items()]


def _article(subject: str, body: str, *, internal: bool) -> dict[str, Any]:
    return {
        "Subject": subject,
        "Body": body,
        "ContentType": "text/plain; charset=utf8",
        "CommunicationChannel": "Internal",
        "SenderType": "agent" if internal else "customer",
        "IsVisibleForCustomer": 0 if internal else 1,
    }


UPSTREAM_OPERATIONS: dict[Operation, str] = {
    "TicketCreate": "ticket-create",
    "TicketSearch": "ticket-search",
    "TicketGet": "ticket-get",
    "TicketUpdate": "ticket-update",
}
"""The operations of the ``OpenTicketAI`` web service Open Ticket AI ships for OTOBO/Znuny."""


class OtoboZnunyParams(HelpdeskParams):
    """Open Ticket AI's OTOBO/Znuny service params, as its configs write them."""

    base_url: str = Field(min_length=1)
    """``.../nph-genericinterface.pl``, without ``/Webservice/<name>``."""
    username: str = Field("open_ticket_ai", min_length=1)
    """The agent the ``OpenTicketAI`` web service acts as (Open Ticket AI's default)."""
    password: SecretStr = Field(min_length=1)
    webservice_name: str = Field("OpenTicketAI", min_length=1)
    operation_urls: dict[Operation, str] = Field(default_factory=lambda: dict(UPSTREAM_OPERATIONS))
    """Operation -> the route of the web service (any method; POST is sent)."""
    priority_map: dict[Priority, str] = Field(default_factory=dict)
    time_zone: str = "UTC"
    default_customer_user: str | None = None

    _parse_priorities = field_validator("priority_map", mode="before")(parse_priority_map)

    _check_zone = field_validator("time_zone")(check_time_zone)

    def as_znuny(self) -> ZnunyParams:
        """The same system as :class:`ZnunyTicketSystem` reads it: the web service's URL,
        UserLogin and Password with every call (that web service has no session), each
        operation by POST on its route."""
        routes = {
            operation: ("POST", "/" + route.lstrip("/"))
            for operation, route in self.operation_urls.items()
        }
        return ZnunyParams(
            url=f"{self.base_url.rstrip('/')}/Webservice/{self.webservice_name}",
            username=self.username,
            password=self.password,
            auth="password",
            routes=routes,
            priority_map=self.priority_map,
            time_zone=self.time_zone,
            default_customer_user=self.default_customer_user,
            **self.http_settings(),
        )


class OTOBOZnunyTicketSystemService(ZnunyTicketSystem):
    """Open Ticket AI's ``otobo-znuny:OTOBOZnunyTicketSystemService``: a
    :class:`ZnunyTicketSystem` configured with that project's params (``base_url``,
    ``webservice_name``, ``operation_urls``) for its ``OpenTicketAI`` web service."""

    Params = OtoboZnunyParams

    def __init__(self, params: OtoboZnunyParams, *, id: str = "") -> None:
        self.upstream_params = params
        super().__init__(params.as_znuny(), id=id)
