"""A fake Znuny/OTOBO web service (the sample GenericTicketConnectorREST) on 127.0.0.1.

Real HTTP, state in memory. It behaves as Kernel::GenericInterface does where the adapter
can tell:

- transport (Transport::HTTP::REST): the path after ``Webservice/<name>`` picks the first
  operation, in name order, whose method and route (``/Ticket/:TicketID``) match; query
  parameters are data (a repeated key becomes a list), and for a method other than GET the
  JSON body is too; route parameters win. No matching route: HTTP 500 with a text body.
- authentication (Operation::Common::Auth): ``UserLogin`` + ``Password`` or a ``SessionID``
  from SessionCreate in the data of every call.
- operations answer HTTP 200: their data, or ``{"Error": {"ErrorCode", "ErrorMessage"}}``
  with the codes and messages of the real operations (``TicketGet.AccessDenied``,
  ``TicketUpdate.InvalidParameter``, ``TicketSearch.AuthFail``, ...).
- TicketSearch sorts by SortBy/OrderBy (one or a list), has no offset, and an unknown SortBy
  finds nothing, as TicketSearch() returns nothing then; times are ``YYYY-MM-DD HH:MM:SS`` UTC.

``fail_next(n)`` answers the next n requests with a 503 page, as a proxy in front would.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.tickets.fake_transport import Answer, FakeTransport

WEBSERVICE = "/otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST"
# RouteOperationMapping of development/webservices/GenericTicketConnectorREST.yml
SAMPLE_ROUTES = {
    "SessionCreate": ("POST", "/Session"),
    "SessionGet": ("GET", "/Session/:SessionID"),
    "TicketCreate": ("POST", "/Ticket"),
    "TicketGet": ("GET", "/Ticket/:TicketID"),
    "TicketGetList": ("GET", "/TicketList"),
    "TicketHistoryGet": ("GET", "/TicketHistory/:TicketID"),
    "TicketSearch": ("GET", "/Ticket"),
    "TicketUpdate": ("PATCH", "/Ticket/:TicketID"),
}
_FORMAT = "%Y-%m-%d %H:%M:%S"
_CHANNELS = ("Email", "Phone", "Internal", "Chat")
_SENDERS = ("agent", "system", "customer")


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: the operation it was routed to (None: no route)."""

    method: str
    path: str
    operation: str | None
    data: dict[str, Any]


@dataclass
class _Ticket:
    id: int
    number: str
    title: str
    queue: str
    state: str
    priority: str
    customer: str
    created: datetime
    changed: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    articles: list[dict[str, Any]] = field(default_factory=list)


class _Failure(Exception):
    """An operation's ReturnError: ``<Operation>.<kind>`` and ``<Operation>: <message>``."""

    def __init__(self, operation: str, kind: str, message: str) -> None:
        error = {"ErrorCode": f"{operation}.{kind}", "ErrorMessage": f"{operation}: {message}"}
        self.error = {"Error": error}


class FakeZnuny:
    """The web service; a context manager. ``url`` is the web service's base URL."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        queues: tuple[str, ...] = ("Raw", "Incoming", "Billing"),
        states: tuple[str, ...] = ("new", "open", "closed successful", "pending reminder"),
        priorities: tuple[str, ...] = ("1 very low", "2 low", "3 normal", "4 high", "5 very high"),
        dynamic_fields: tuple[str, ...] = ("otai_label",),
        routes: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.users = users if users is not None else {"otai": "s3cret"}
        self.queues, self.states, self.priorities = queues, states, priorities
        self.dynamic_fields = dynamic_fields
        self.routes = dict(routes if routes is not None else SAMPLE_ROUTES)
        self.seen: list[Seen] = []
        self.sessions: dict[str, str] = {}
        self._tickets: dict[int, _Ticket] = {}
        self._articles = 0
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._transport = FakeTransport(self.handle)

    def __enter__(self) -> FakeZnuny:
        self._transport.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._transport.stop()

    @property
    def url(self) -> str:
        return f"{self._transport.base_url}{WEBSERVICE}"

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` and an HTML page."""
        with self._lock:
            self._failures += [status] * count

    def operations(self) -> list[str | None]:
        return [seen.operation for seen in self.seen]

    # -- transport ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        status, content_type, payload = self._answer(method, target, body)
        return status, {"Content-Type": content_type}, payload

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        with self._lock:
            if self._failures:
                page = b"<html><body><h1>Service Unavailable</h1></body></html>"
                return self._failures.pop(0), "text/html", page
            parts = urlsplit(target)
            path = re.sub(r"^.*?Webservice(?:ID)?/[^/]+(/.*)$", r"\1", parts.path)
            query: dict[str, Any] = {}
            for key, value in parse_qsl(parts.query, keep_blank_values=True):
                query[key] = [*_many(query[key]), value] if key in query else value
            operation, uri = self._route(method, path)
            data: Any = {**query, **uri}
            if operation is not None and method != "GET" and body:
                try:
                    data = {**json.loads(body), **query, **uri}
                except (ValueError, TypeError):
                    return 500, "text/plain", b"Error while decoding request content."
            self.seen.append(Seen(method, path, operation, data))
            if operation is None:
                text = f"HTTP::REST Error while determine Operation for request URI '{path}'."
                return 500, "text/plain", text.encode()
            implemented = getattr(self, f"_{operation}", None)
            if implemented is None:
                return 501, "text/plain", f"the fake has no {operation}".encode()
            try:
                answer = implemented(data)
            except _Failure as failure:
                answer = failure.error
            return 200, "application/json; charset=utf-8", json.dumps(answer).encode()

    def _route(self, method: str, path: str) -> tuple[str | None, dict[str, str]]:
        for operation in sorted(self.routes):
            route_method, route = self.routes[operation]
            pattern = re.sub(r":([^/]+)", r"(?P<\1>[^/]+)", route)
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                return operation, match.groupdict()
        return None, {}

    def _auth(self, operation: str, data: dict[str, Any]) -> str:
        session = data.get("SessionID")
        if session:
            user = self.sessions.get(session)
        else:
            login = data.get("UserLogin") or ""
            user = login if login and self.users.get(login) == data.get("Password") else None
        if user is None:
            writes = operation in ("TicketCreate", "TicketUpdate")
            message = "User could not be authenticated!" if writes else "Authorization failing!"
            raise _Failure(operation, "AuthFail", message)
        return user

    # -- operations ---------------------------------------------------------------------------

    def _SessionCreate(self, data: dict[str, Any]) -> dict[str, Any]:
        user = self._auth("SessionCreate", {k: v for k, v in data.items() if k != "SessionID"})
        session = f"session-{len(self.sessions) + 1}-{user}"
        self.sessions[session] = user
        return {"SessionID": session}

    def _TicketSearch(self, data: dict[str, Any]) -> dict[str, Any]:
        self._auth("TicketSearch", data)
        found = list(self._tickets.values())
        queues, states = _many(data.get("Queues")), _many(data.get("States"))
        queues += [self.queues[int(i) - 1] for i in _many(data.get("QueueIDs"))]
        states += [self.states[int(i) - 1] for i in _many(data.get("StateIDs"))]
        if queues:
            found = [t for t in found if t.queue in queues]
        if states:
            found = [t for t in found if t.state in states]
        if data.get("TicketLastChangeTimeNewerDate"):
            since = _time(data["TicketLastChangeTimeNewerDate"])
            found = [t for t in found if t.changed >= since]
        keys = {"Age": "created", "Created": "created", "Changed": "changed", "Title": "title"}
        keys |= {"Ticket": "number", "TicketNumber": "number"}
        sort_by = _many(data.get("SortBy")) or ["Age"]
        order_by = _many(data.get("OrderBy")) or ["Down"]
        if any(key not in keys for key in sort_by):
            return {}
        found.sort(key=lambda t: t.id)
        for i, key in reversed(list(enumerate(sort_by))):
            down = (order_by[i] if i < len(order_by) else order_by[-1]) == "Down"
            found.sort(key=lambda t: getattr(t, keys[key]), reverse=down)
        found = found[: int(data.get("Limit") or 500)]
        return {"TicketID": [str(t.id) for t in found]} if found else {}

    def _TicketGet(self, data: dict[str, Any]) -> dict[str, Any]:
        self._auth("TicketGet", data)
        if not data.get("TicketID"):
            raise _Failure("TicketGet", "MissingParameter", "TicketID parameter is missing!")
        raw = data["TicketID"]
        ids = raw if isinstance(raw, list) else re.split(r"\s*,\s*", str(raw))
        if not all(re.fullmatch(r"[1-9]\d*", str(i)) for i in ids):
            raise _Failure("TicketGet", "WrongStructure", "Invalid ticket ID parameter(s) found!")
        if any(int(i) not in self._tickets for i in ids):
            raise _Failure("TicketGet", "AccessDenied", "User does not have access to the ticket!")
        return {"Ticket": [self._ticket_data(self._tickets[int(i)], data) for i in ids]}

    def _TicketCreate(self, data: dict[str, Any]) -> dict[str, Any]:
        self._auth("TicketCreate", data)
        ticket, article = data.get("Ticket"), data.get("Article")
        for name, value in (("Ticket", ticket), ("Article", article)):
            if not isinstance(value, dict) or not value:
                raise _Failure(
                    "TicketCreate", "MissingParameter", f"{name} parameter is missing or not valid!"
                )
        assert isinstance(ticket, dict)
        assert isinstance(article, dict)
        for needed in ("Title", "CustomerUser"):
            if not ticket.get(needed):
                raise _Failure(
                    "TicketCreate", "MissingParameter", f"Ticket->{needed} parameter is missing!"
                )
        if "@" not in ticket["CustomerUser"]:
            raise _Failure(
                "TicketCreate", "InvalidParameter", "Ticket->CustomerUser parameter is invalid!"
            )
        self._check_ticket("TicketCreate", ticket, required=True)
        self._check_article("TicketCreate", article)
        fields = self._check_fields("TicketCreate", data.get("DynamicField"))
        now = _now()
        new = _Ticket(
            id=len(self._tickets) + 1,
            number=f"{now:%Y%m%d}{len(self._tickets) + 1:06d}",
            title=ticket["Title"].strip(),
            queue=ticket["Queue"],
            state=ticket["State"],
            priority=ticket["Priority"],
            customer=ticket["CustomerUser"],
            created=now,
            changed=now,
            fields=fields,
        )
        self._tickets[new.id] = new
        article_id = self._add_article(new, article)
        return {"TicketID": str(new.id), "TicketNumber": new.number, "ArticleID": str(article_id)}

    def _TicketUpdate(self, data: dict[str, Any]) -> dict[str, Any]:
        if not data.get("TicketID") and not data.get("TicketNumber"):
            raise _Failure(
                "TicketUpdate", "MissingParameter", "TicketID or TicketNumber is required!"
            )
        self._auth("TicketUpdate", data)
        ticket = (
            self._tickets.get(int(data["TicketID"])) if str(data["TicketID"]).isdigit() else None
        )
        if ticket is None:
            raise _Failure(
                "TicketUpdate", "AccessDenied", "User does not have access to the ticket!"
            )
        changes = data.get("Ticket")
        if changes is not None and not (isinstance(changes, dict) and changes):
            raise _Failure("TicketUpdate", "InvalidParameter", "Ticket parameter is not valid!")
        changes = dict(changes or {})
        for key, known in (
            ("Queue", self.queues),
            ("State", self.states),
            ("Priority", self.priorities),
        ):
            given = str(changes.get(f"{key}ID") or "")
            if given:  # by id, as Znuny takes it too
                if not given.isdigit() or not 1 <= int(given) <= len(known):
                    raise _Failure(
                        "TicketUpdate", "InvalidParameter", f"Ticket->{key}ID is invalid!"
                    )
                changes[key] = known[int(given) - 1]
        self._check_ticket("TicketUpdate", changes, required=False)
        article = data.get("Article")
        if article is not None:
            if not isinstance(article, dict) or not article:
                raise _Failure(
                    "TicketUpdate", "InvalidParameter", "Article parameter is not valid!"
                )
            self._check_article("TicketUpdate", article)
        fields = self._check_fields("TicketUpdate", data.get("DynamicField"))
        ticket.title = changes.get("Title") or ticket.title
        ticket.queue = changes.get("Queue") or ticket.queue
        ticket.state = changes.get("State") or ticket.state
        ticket.priority = changes.get("Priority") or ticket.priority
        ticket.fields.update(fields)
        ticket.changed = _now()
        answer: dict[str, Any] = {"TicketID": str(ticket.id), "TicketNumber": ticket.number}
        if article is not None:
            answer["ArticleID"] = str(self._add_article(ticket, article))
        return answer

    # -- helpers ------------------------------------------------------------------------------

    def _check_ticket(self, operation: str, ticket: dict[str, Any], *, required: bool) -> None:
        for key, known in (
            ("Queue", self.queues),
            ("State", self.states),
            ("Priority", self.priorities),
        ):
            what = f"Ticket->{key}ID or Ticket->{key} parameter is"
            if not ticket.get(key) and required:
                raise _Failure(operation, "MissingParameter", f"{what} required!")
            if ticket.get(key) and ticket[key] not in known:
                raise _Failure(operation, "InvalidParameter", f"{what} invalid!")

    def _check_article(self, operation: str, article: dict[str, Any]) -> None:
        for needed in ("Subject", "Body"):
            if not str(article.get(needed) or "").strip():
                raise _Failure(
                    operation, "MissingParameter", f"Article->{needed} parameter is missing!"
                )
        if not article.get("ContentType") and not (
            article.get("MimeType") and article.get("Charset")
        ):
            raise _Failure(
                operation,
                "MissingParameter",
                "Article->ContentType or Article->MimeType and Article->Charset parameters"
                " are required!",
            )
        if article.get("CommunicationChannel", "Internal") not in _CHANNELS:
            raise _Failure(
                operation,
                "InvalidParameter",
                "Article->CommunicationChannel or Article->CommunicationChannelID parameter"
                " is invalid or not supported!",
            )
        if article.get("SenderType", "agent") not in _SENDERS:
            raise _Failure(
                operation,
                "InvalidParameter",
                "Article->SenderTypeID or Ticket->SenderType parameter is invalid!",
            )

    def _check_fields(self, operation: str, raw: Any) -> dict[str, Any]:
        items = [raw] if isinstance(raw, dict) else raw or []
        for item in items:
            if not isinstance(item, dict) or "Name" not in item or "Value" not in item:
                raise _Failure(
                    operation, "MissingParameter", "DynamicField->Name parameter is missing!"
                )
            if item["Name"] not in self.dynamic_fields:
                raise _Failure(
                    operation, "InvalidParameter", "DynamicField->Name parameter is invalid!"
                )
        return {item["Name"]: item["Value"] for item in items}

    def _add_article(self, ticket: _Ticket, article: dict[str, Any]) -> int:
        self._articles += 1
        now = _now()
        ticket.articles.append(
            {
                "ArticleID": self._articles,
                "TicketID": ticket.id,
                "ArticleNumber": len(ticket.articles) + 1,
                "Subject": str(article["Subject"]).strip(),
                "Body": str(article["Body"]).strip(),
                "From": article.get("From", ""),
                "To": article.get("To", ""),
                "SenderType": article.get("SenderType", "agent"),
                "CommunicationChannel": article.get("CommunicationChannel", "Internal"),
                "IsVisibleForCustomer": int(article.get("IsVisibleForCustomer", 1)),
                "ContentType": article.get("ContentType")
                or f"{article['MimeType']}; charset={article['Charset']}",
                "CreateTime": f"{now:{_FORMAT}}",
                "ChangeTime": f"{now:{_FORMAT}}",
                "IncomingTime": int(now.timestamp()),
            }
        )
        ticket.changed = now
        return self._articles

    def _ticket_data(self, ticket: _Ticket, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "TicketID": ticket.id,
            "TicketNumber": ticket.number,
            "Title": ticket.title,
            "Queue": ticket.queue,
            "QueueID": self.queues.index(ticket.queue) + 1,
            "State": ticket.state,
            "StateType": ticket.state.split()[0],
            "Priority": ticket.priority,
            "PriorityID": self.priorities.index(ticket.priority) + 1,
            "Lock": "unlock",
            "Type": "Unclassified",
            "Owner": "root@localhost",
            "CustomerUserID": ticket.customer,
            "CustomerID": ticket.customer.split("@")[-1],
            "Created": f"{ticket.created:{_FORMAT}}",
            "Changed": f"{ticket.changed:{_FORMAT}}",
            "Age": int((_now() - ticket.created).total_seconds()),
            "ArchiveFlag": "n",
            "TimeUnit": 0,
        }
        if str(data.get("DynamicFields", "0")) == "1":
            result["DynamicField"] = [
                {"Name": name, "Value": ticket.fields.get(name)} for name in self.dynamic_fields
            ]
        if str(data.get("AllArticles", "0")) == "1" and ticket.articles:
            articles = list(ticket.articles)
            if data.get("ArticleOrder") == "DESC":
                articles.reverse()
            limit = int(data.get("ArticleLimit") or 0)
            result["Article"] = articles[:limit] if limit else articles
        return result


def _many(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, list) else [value]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _time(text: str) -> datetime:
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)
