"""What the HTTP listener and the triggers it serves exchange: requests, responses, and the
:class:`HttpTrigger` protocol a webhook-style trigger implements.

The listener owns the wire (HTTP/1.1 on asyncio streams, body limits, timeouts); a trigger
sees a whole request whose body was read within its limit, and answers with a response.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from open_ticket_ai.core.triggers.base import FireOutcome, TriggerHost

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "HttpTrigger",
    "bearer_matches",
    "error_response",
    "fire_response",
    "json_response",
]


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
"""``json.dumps(..., separators=(",", ":"), default=str)``, made once (``dumps`` with options
makes an encoder per call)."""


@dataclass(frozen=True)
class HttpResponse:
    """A response: a status, a JSON body, and extra headers (lower-case names)."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The body as JSON bytes (empty for a None body)."""
        if self.body is None:
            return b""
        return _ENCODER.encode(self.body).encode()


@dataclass(frozen=True)
class HttpRequest:
    """A request whose body was read in full: ``headers`` have lower-case names (the last one
    wins when a name repeats); ``path`` is percent-decoded, without the query."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    client: str = ""

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not."""
        try:
            return json.loads(self.body)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def json_response(status: int, body: Any, **headers: str) -> HttpResponse:
    return HttpResponse(status, body, {k.replace("_", "-").lower(): v for k, v in headers.items()})


def error_response(status: int, message: str, **headers: str) -> HttpResponse:
    """``{"error": message}`` with ``status``."""
    return json_response(status, {"error": message}, **headers)


def bearer_matches(header: str | None, secret: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <secret>``, compared in constant time."""
    if header is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    # Header values are latin-1 on the wire: encoding back gives the bytes the client sent.
    sent = token.strip().encode("latin-1", "replace")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent, secret.encode())


def fire_response(source: str, outcomes: Sequence[FireOutcome]) -> HttpResponse:
    """The answer to a fire: 202 when at least one runner started a run (``runs``) or kept
    the fire for after its current run (``queued``); 409 when every runner refused (busy,
    stopping). Every refusal is listed under ``refused`` with its reason (the orchestrator
    publishes each as ``trigger.refused``)."""
    runs = [{"runner": o.runner, "run_id": o.run_id} for o in outcomes if o.started]
    queued = [{"runner": o.runner, "reason": o.reason} for o in outcomes if o.queued]
    refused = [{"runner": o.runner, "reason": o.reason} for o in outcomes if o.refused]
    body: dict[str, Any] = {"runs": runs, "refused": refused}
    if queued:
        body["queued"] = queued
    if runs or queued or not refused:
        return json_response(202, body)
    reasons = "; ".join(str(item["reason"]) for item in refused)
    return json_response(409, {"error": reasons, **body})


@runtime_checkable
class HttpTrigger(Protocol):
    """An event trigger reached at ``POST /hooks/{id}`` of the HTTP listener.

    The listener calls :meth:`check_headers` before it reads the body (a refusal then costs
    no body), reads at most ``max_body_bytes`` (or the listener's own limit, if lower), then
    calls :meth:`handle_http`, which fires through ``host`` and returns the response."""

    @property
    def max_body_bytes(self) -> int | None: ...

    def check_headers(self, request: HttpRequest) -> HttpResponse | None:
        """A response that ends the request now (unauthenticated, ...), or None to go on."""
        ...

    def handle_http(self, request: HttpRequest, host: TriggerHost) -> HttpResponse:
        """Answer a request whose body has been read."""
        ...
