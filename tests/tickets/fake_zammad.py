"""A fake Zammad REST API (``/api/v1``) on 127.0.0.1: real HTTP, state in memory.

What it implements, as Zammad does it:

- token auth: ``Authorization: Token token=<token>``; without a valid token every call answers
  401 ``{"error": "authentication failed"}`` (with the ``X-Failure`` header).
- ``GET /tickets/search`` (query, page, per_page or limit, sort_by/order_by as one value or a
  ``[]`` list, expand): pages by page number (at most 200 a page); without expand the answer
  is ``{"tickets": [ids], "tickets_count", "assets"}``, with it a list of expanded tickets.
  The query understands what the search index does for ``field:"value"``, ``field:value``,
  ``field:[from TO to]`` (``*`` open), a bare word (in the title) and ``*``, joined by AND.
- ``GET/PUT /tickets/:id`` and ``POST /tickets`` (with an ``article``): names (``group``,
  ``priority``, ``state``, ``customer``) or ids; ``customer_id: "guess:<email>"`` finds or
  creates the customer; attributes Zammad does not know are dropped silently; ``expand=true``
  answers names, else ids; a create answers 201.
- ``GET /ticket_articles/by_ticket/:id`` and ``POST /ticket_articles`` (answers 201); writing
  an article touches its ticket's ``updated_at``.
- errors are ``{"error": ..., "error_human": ...}``: 404 for an unknown record
  (``Couldn't find Ticket with 'id'=9``), 422 for an unknown name (``No lookup value found
  for 'group': "X"``) or a missing required attribute; 422 too for a query the fake cannot read.

``fail_next(n)`` answers the next n requests with a 502 page, as nginx in front would.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.tickets.fake_transport import Answer, FakeTransport

_TICKET_ATTRIBUTES = ("title", "group_id", "priority_id", "state_id", "customer_id", "note")
_SORTABLE = ("id", "number", "title", "created_at", "updated_at")
_TYPES = ("email", "phone", "web", "note", "sms")


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    query: dict[str, Any]
    body: Any
    headers: dict[str, str]


class _Answer(Exception):
    def __init__(self, status: int, error: str, human: str | None = None) -> None:
        self.status = status
        self.body = {"error": error, "error_human": human or error}


class FakeZammad:
    """The API; a context manager. ``url`` is the instance's base URL (without /api/v1)."""

    def __init__(
        self,
        *,
        token: str = "zammad-test-token",
        groups: tuple[str, ...] = ("Users", "Incoming", "Billing"),
        priorities: tuple[str, ...] = ("1 low", "2 normal", "3 high"),
        states: tuple[str, ...] = ("new", "open", "pending reminder", "closed", "merged"),
        attributes: tuple[str, ...] = ("otai_label",),
    ) -> None:
        self.token = token
        self.groups, self.priorities, self.states = groups, priorities, states
        self.attributes = attributes
        self.users: dict[int, str] = {1: "admin@example.com"}
        self.seen: list[Seen] = []
        self.tickets: dict[int, dict[str, Any]] = {}
        self.articles: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._transport = FakeTransport(self.handle)

    def __enter__(self) -> FakeZammad:
        self._transport.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._transport.stop()

    @property
    def url(self) -> str:
        return f"{self._transport.base_url}"

    def fail_next(self, count: int, status: int = 502) -> None:
        """Answer the next ``count`` requests with ``status`` and an HTML page."""
        with self._lock:
            self._failures += [status] * count

    def add_ticket(self, title: str, group: str, customer: str = "ada@example.com") -> int:
        """A ticket (with a first article) made in place, as if through the UI; its id."""
        body = {"title": title, "group": group, "customer_id": f"guess:{customer}"}
        with self._lock:
            ticket = self._create({**body, "article": {"subject": title, "body": title}})
        return int(ticket["id"])

    # -- dispatch -----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        parts = urlsplit(target)
        query: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.endswith("[]"):
                query.setdefault(key[:-2], []).append(value)
            else:
                query[key] = value
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {"Content-Type": "application/json"}, b'{"error": "invalid JSON"}'
        with self._lock:
            self.seen.append(Seen(method, parts.path, query, body, headers))
            if self._failures:
                page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                return self._failures.pop(0), {"Content-Type": "text/html"}, page
            auth = headers.get("authorization", "")
            if auth != f"Token token={self.token}":
                payload = json.dumps({"error": "authentication failed"}).encode()
                failure = {"Content-Type": "application/json", "X-Failure": "authentication failed"}
                return 401, failure, payload
            try:
                status, answer = self._dispatch(method, parts.path, query, body or {})
            except _Answer as error:
                status, answer = error.status, error.body
        return (
            status,
            {"Content-Type": "application/json; charset=utf-8"},
            json.dumps(answer).encode(),
        )

    def _dispatch(
        self, method: str, path: str, query: dict[str, Any], body: dict[str, Any]
    ) -> tuple[int, Any]:
        expand = query.get("expand") == "true"
        match (method, path.removeprefix("/api/v1").strip("/").split("/")):
            case ("GET", ["tickets", "search"]):
                return 200, self._search(query, expand)
            case ("GET", ["tickets", ticket_id]):
                return 200, self._view(self._ticket(ticket_id), expand)
            case ("POST", ["tickets"]):
                return 201, self._view(self._create(body), expand)
            case ("PUT", ["tickets", ticket_id]):
                return 200, self._view(self._update(self._ticket(ticket_id), body), expand)
            case ("GET", ["ticket_articles", "by_ticket", ticket_id]):
                ticket = self._ticket(ticket_id)
                return 200, [a for a in self.articles if a["ticket_id"] == ticket["id"]]
            case ("POST", ["ticket_articles"]):
                ticket = self._ticket(str(body.get("ticket_id", "")))
                return 201, self._article(ticket, body)
        raise _Answer(404, f'No route matches [{method}] "{path}"')

    # -- tickets ------------------------------------------------------------------------------

    def _ticket(self, ticket_id: str) -> dict[str, Any]:
        ticket = self.tickets.get(int(ticket_id)) if ticket_id.isdigit() else None
        if ticket is None:
            raise _Answer(404, f"Couldn't find Ticket with 'id'={ticket_id}")
        return ticket

    def _lookup(self, body: dict[str, Any], name: str, values: tuple[str, ...]) -> None:
        """Turn ``body[name]`` (a name) into ``body[name_id]``, as Zammad's association
        name conversion does."""
        if name in body:
            if body[name] not in values:
                raise _Answer(422, f"No lookup value found for '{name}': {json.dumps(body[name])}")
            body[f"{name}_id"] = values.index(body.pop(name)) + 1

    def _customer(self, body: dict[str, Any]) -> None:
        guess = body.get("customer_id")
        if isinstance(guess, str) and guess.startswith("guess:"):
            email = guess.removeprefix("guess:")
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
                raise _Answer(422, f"Invalid email '{email}' of customer")
            body["customer"] = email
            if email.lower() not in self.users.values():
                self.users[len(self.users) + 1] = email.lower()
        if "customer" in body:
            logins = list(self.users.values())
            if str(body["customer"]).lower() not in logins:
                raise _Answer(
                    422, f"No lookup value found for 'customer': {json.dumps(body['customer'])}"
                )
            body["customer_id"] = logins.index(str(body.pop("customer")).lower()) + 1

    def _clean(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        self._lookup(body, "group", self.groups)
        self._lookup(body, "priority", self.priorities)
        self._lookup(body, "state", self.states)
        self._customer(body)
        known = (*_TICKET_ATTRIBUTES, *self.attributes)
        return {key: value for key, value in body.items() if key in known}

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        clean = self._clean(body)
        clean.setdefault("state_id", self.states.index("new") + 1)
        clean.setdefault("priority_id", len(self.priorities) // 2 + 1)  # the middle one
        for needed in ("title", "group_id", "customer_id"):
            if not clean.get(needed):
                label = needed.removesuffix("_id").capitalize()
                raise _Answer(
                    422, f"Validation failed: {label} can't be blank", f"{label} can't be blank"
                )
        now, number = _now(), 31000 + len(self.tickets) + 1
        ticket = {"id": len(self.tickets) + 1, "number": str(number), "note": None, **clean}
        ticket.update(owner_id=1, organization_id=None, created_at=now, updated_at=now)
        ticket.update(created_by_id=1, updated_by_id=1)
        for attribute in self.attributes:
            ticket.setdefault(attribute, None)
        self.tickets[ticket["id"]] = ticket
        if isinstance(body.get("article"), dict):
            self._article(ticket, body["article"])
        return ticket

    def _update(self, ticket: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        ticket.update(self._clean(body), updated_at=_now())
        if isinstance(body.get("article"), dict):
            self._article(ticket, body["article"])
        return ticket

    def _view(self, ticket: dict[str, Any], expand: bool) -> dict[str, Any]:
        ids = [a["id"] for a in self.articles if a["ticket_id"] == ticket["id"]]
        view = {**ticket, "article_ids": ids, "article_count": len(ids)}
        if expand:
            view.update(
                group=self.groups[ticket["group_id"] - 1],
                priority=self.priorities[ticket["priority_id"] - 1],
                state=self.states[ticket["state_id"] - 1],
                customer=self.users[ticket["customer_id"]],
                owner="-",
                organization=None,
                created_by=self.users[1],
                updated_by=self.users[1],
            )
        return view

    def _search(self, query: dict[str, Any], expand: bool) -> Any:
        per_page = min(int(query.get("per_page") or query.get("limit") or 50), 200)
        page = int(query.get("page") or 1)
        found = [self._view(t, True) for t in self.tickets.values()]
        for term in re.split(r"\s+AND\s+", str(query.get("query") or "").strip()):
            found = [t for t in found if _matches(term, t)]
        sort_by = _many(query.get("sort_by")) or ["updated_at"]
        order_by = _many(query.get("order_by")) or ["desc"]
        for column in sort_by:
            if column not in _SORTABLE:
                raise _Answer(500, f"Found invalid column '{column}' for sorting.")
        for i, column in reversed(list(enumerate(sort_by))):
            descending = (order_by[i] if i < len(order_by) else "desc").lower() == "desc"
            found.sort(key=lambda t: t[column], reverse=descending)
        found = found[(page - 1) * per_page : page * per_page]
        if expand:
            return found
        assets = {"Ticket": {str(t["id"]): self._view(self.tickets[t["id"]], False) for t in found}}
        return {"tickets": [t["id"] for t in found], "tickets_count": len(found), "assets": assets}

    # -- articles -----------------------------------------------------------------------------

    def _article(self, ticket: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("type", "note")
        if kind not in _TYPES:
            raise _Answer(422, f"No lookup value found for 'type': {json.dumps(kind)}")
        now = _now()
        article = {
            "id": len(self.articles) + 1,
            "ticket_id": ticket["id"],
            "type_id": _TYPES.index(kind) + 1,
            "type": kind,
            "sender": "Agent",
            "from": "otai agent",
            "to": None,
            "subject": body.get("subject"),
            "body": body.get("body", ""),
            "content_type": body.get("content_type", "text/plain"),
            "internal": bool(body.get("internal", False)),
            "attachments": [],
            "created_by": self.users[1],
            "created_at": now,
            "updated_at": now,
        }
        self.articles.append(article)
        ticket["updated_at"] = now
        return article


_WORD = r'(?:"(?:[^"\\]|\\.)*"|\S+)'  # "quoted, with \" escapes" or a bare word
_TERM = re.compile(
    rf"(?P<field>[\w.]+):(?:\[(?P<low>{_WORD}) TO (?P<high>{_WORD})\]|(?P<value>{_WORD}))"
)


def _matches(term: str, ticket: dict[str, Any]) -> bool:
    if term in ("", "*"):
        return True
    match = _TERM.fullmatch(term)
    if match is None:
        if ":" in term or " " in term:
            raise _Answer(422, f"The search query could not be processed: {term}")
        return term.lower() in str(ticket["title"]).lower()
    name = match["field"].removesuffix(".name")
    if name not in ticket:
        raise _Answer(
            422, f"The search query could not be processed: unknown field {match['field']}"
        )
    value = str(ticket[name])
    if match["value"] is not None:
        return value == _unquote(match["value"])
    low, high = _unquote(match["low"]), _unquote(match["high"])
    if name.endswith("_at"):
        at = datetime.fromisoformat(value)
        return (low == "*" or at >= datetime.fromisoformat(low)) and (
            high == "*" or at <= datetime.fromisoformat(high)
        )
    return (low == "*" or value >= low) and (high == "*" or value <= high)


def _unquote(text: str) -> str:
    if text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _many(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _now() -> str:
    """Zammad's timestamps: UTC, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
