"""WebhookTrigger: fires its runners when an authenticated POST reaches ``/hooks/{id}``."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import re
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from open_ticket_ai import Duration, EventTrigger, ParamsModel, TriggerHost
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.http.messages import (
    HttpRequest,
    HttpResponse,
    bearer_matches,
    error_response,
    fire_response,
    json_response,
)

__all__ = [
    "COMBINED_TIMESTAMP",
    "MAX_SEEN_SIGNATURES",
    "SIGNATURE_HEADER",
    "Seen",
    "SeenSignatures",
    "WebhookParams",
    "WebhookTrigger",
]

SIGNATURE_HEADER = "x-signature-256"
COMBINED_TIMESTAMP = "signature"
"""``timestamp_header: signature``: the timestamp is in the signature header itself
(``X-Signature-256: t=<unix seconds>,v1=<hex>``, Stripe's form)."""
MAX_SEEN_SIGNATURES = 100_000
"""How many accepted signatures a trigger remembers at most (about 20 MB)."""

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP token (RFC 9110)
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


class WebhookParams(ParamsModel):
    """``secret`` (write ``"{{ env.OTAI_... }}"``), ``auth``, ``timestamp_header``,
    ``tolerance``, ``json``, ``max_body_bytes``."""

    secret: str = Field(min_length=1)
    auth: Literal["bearer", "hmac-sha256"] = "bearer"
    """``bearer``: ``Authorization: Bearer <secret>``. ``hmac-sha256``: ``X-Signature-256:
    sha256=<hex HMAC-SHA256 of the raw body keyed with the secret>`` (GitHub's scheme)."""
    timestamp_header: str | None = None
    """``hmac-sha256`` only: sign a timestamp too, and refuse stale and replayed requests
    (the Stripe/Slack scheme). A header name (``X-Timestamp``): it holds the unix seconds and
    ``X-Signature-256: sha256=<hex HMAC of "<timestamp>.<body>">``. ``signature`` (or
    ``X-Signature-256``): the combined form ``X-Signature-256: t=<unix seconds>,v1=<hex HMAC
    of "<t>.<body>">``. Unset: only the body is signed and nothing is checked for replays."""
    tolerance: Duration = Field(300.0, gt=0)
    """With ``timestamp_header``: how far the timestamp may lie from now, either way (401
    beyond), and how long a signature is remembered to refuse its replay (409)."""
    json_body: bool = Field(True, alias="json")
    """The body must be JSON (400 otherwise) and is the payload; false: the body as text."""
    max_body_bytes: int | None = Field(default=None, ge=1)
    """A body limit below the listener's ``orchestrator.http.max_body_bytes``."""

    @field_validator("timestamp_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip()
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"timestamp_header {value!r} is not a header name: give one such as "
                f"'X-Timestamp', or {COMBINED_TIMESTAMP!r} for 't=...,v1=...' in the "
                "X-Signature-256 header"
            )
        return name

    @model_validator(mode="after")
    def _timestamp_needs_hmac(self) -> WebhookParams:
        if self.timestamp_header is not None and self.auth != "hmac-sha256":
            raise ValueError(
                f"timestamp_header needs 'auth: hmac-sha256' (auth is {self.auth!r}: a bearer "
                "token signs no timestamp)"
            )
        if self.timestamp_header is None and "tolerance" in self.model_fields_set:
            raise ValueError(
                "tolerance needs timestamp_header: without a signed timestamp there is "
                "nothing to compare it with"
            )
        return self

    @property
    def combined(self) -> bool:
        """Whether the timestamp is inside the signature header (``t=...,v1=...``)."""
        name = (self.timestamp_header or "").lower()
        return name in (COMBINED_TIMESTAMP, SIGNATURE_HEADER)


class Seen(Enum):
    NEW = "new"
    REPLAYED = "replayed"
    FULL = "full"


class SeenSignatures:
    """The signatures accepted recently, each kept until its timestamp leaves the tolerance
    (``expires``); after that a replay is refused for its stale timestamp instead. At most
    ``cap`` are kept: when full, a new signature is not taken (``Seen.FULL``) until the
    soonest one expires."""

    def __init__(self, cap: int = MAX_SEEN_SIGNATURES) -> None:
        self.cap = cap
        self._expires: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._expires)

    def add(self, key: bytes, expires: float, now: float) -> Seen:
        """Remember ``key`` until ``expires``, unless it is remembered already or the store
        is full. Forgets the expired ones first."""
        self.forget_expired(now)
        if key in self._expires:
            return Seen.REPLAYED
        if len(self._expires) >= self.cap:
            return Seen.FULL
        self._expires[key] = expires
        heapq.heappush(self._heap, (expires, key))
        return Seen.NEW

    def forget_expired(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now:
            expires, key = heapq.heappop(heap)
            if self._expires.get(key) == expires:
                del self._expires[key]

    def next_expiry(self) -> float | None:
        """When the soonest remembered signature is forgotten."""
        return self._heap[0][0] if self._heap else None


class WebhookTrigger(EventTrigger[WebhookParams]):
    """Fires every runner listing it when ``POST /hooks/{id}`` arrives with valid credentials.

    Unauthenticated requests get 401 and fire nothing. The payload (the parsed JSON body) is
    ``trigger.payload`` in the runners' templates. The answer is 202 with the runs started
    and the runners that refused (busy); 409 when every runner refused.

    With ``timestamp_header``, a request whose timestamp is missing or further than
    ``tolerance`` from ``clock()`` gets 401, and one whose signature was accepted before
    gets 409 with ``"replayed": true`` in its body (for the listener to publish as
    ``webhook.replayed``)."""

    needs_http: ClassVar[bool] = True

    def __init__(
        self,
        params: WebhookParams,
        *,
        id: str = "",
        clock: Callable[[], float] = time.time,
        max_seen: int = MAX_SEEN_SIGNATURES,
    ) -> None:
        super().__init__(params, id=id)
        self.clock = clock
        """Now, in unix seconds: what timestamps are compared with (tests replace it)."""
        self.seen = SeenSignatures(max_seen)

    @property
    def max_body_bytes(self) -> int | None:
        return self.params.max_body_bytes

    def check_headers(self, request: HttpRequest) -> HttpResponse | None:
        """Refuse before the body is read: a bad bearer token, no signature at all, or a
        timestamp that is missing or stale."""
        if self.params.auth == "bearer":
            if not bearer_matches(request.headers.get("authorization"), self.params.secret):
                return self._unauthorized(request, "a valid 'Authorization: Bearer' is required")
        elif self.params.timestamp_header is not None:
            parsed = self._timestamped(request)
            if isinstance(parsed, str):
                return self._unauthorized(request, parsed)
            stale = self._stale(parsed[0], self.clock())
            if stale is not None:
                return self._unauthorized(request, stale)
        elif not request.headers.get(SIGNATURE_HEADER, "").startswith("sha256="):
            return self._unauthorized(request, "an 'X-Signature-256: sha256=...' is required")
        return None

    def handle_http(self, request: HttpRequest, host: TriggerHost) -> HttpResponse:
        if self.params.auth == "hmac-sha256":
            if self.params.timestamp_header is not None:
                refused = self._check_timestamped(request)
                if refused is not None:
                    return refused
            elif not self._signed(request):
                return self._unauthorized(request, "the X-Signature-256 does not match the body")
        payload: Any
        if self.params.json_body:
            try:
                payload = request.json()
            except ValueError as exc:
                return error_response(400, f"the body is not JSON: {exc}")
        else:
            payload = request.body.decode("utf-8", "replace")
        return fire_response(self.id, host.fire(payload))

    def _signed(self, request: HttpRequest) -> bool:
        given = request.headers.get(SIGNATURE_HEADER, "").removeprefix("sha256=").strip().lower()
        wanted = hmac.new(self.params.secret.encode(), request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), wanted.encode())

    # -- timestamped signatures -----------------------------------------------------------

    def _check_timestamped(self, request: HttpRequest) -> HttpResponse | None:
        """401 for a missing, stale or wrong signature; 409 for a replay; 503 when the
        store of seen signatures is full; None to go on."""
        parsed = self._timestamped(request)
        if isinstance(parsed, str):
            return self._unauthorized(request, parsed)
        timestamp, candidates = parsed
        now = self.clock()
        stale = self._stale(timestamp, now)
        if stale is not None:
            return self._unauthorized(request, stale)
        signed = timestamp.encode() + b"." + request.body
        digest = hmac.new(self.params.secret.encode(), signed, hashlib.sha256).digest()
        wanted = digest.hex().encode()
        # Every candidate is compared (no early exit), each in constant time.
        matches = [hmac.compare_digest(c.encode(), wanted) for c in candidates]
        if not any(matches):
            return self._unauthorized(
                request, "the X-Signature-256 does not match the timestamp and the body"
            )
        tolerance = self.params.tolerance
        seen = self.seen.add(digest, int(timestamp) + tolerance, now)
        if seen is Seen.REPLAYED:
            message = (
                "this signature was accepted before (a replay): sign the request again with "
                "a fresh timestamp"
            )
            # The listener publishes ``webhook.replayed`` for a hook's 409 marked so.
            return json_response(409, {"error": message, "replayed": True})
        if seen is Seen.FULL:
            soonest = self.seen.next_expiry()
            wait = max(1, math.ceil((soonest if soonest is not None else now) - now))
            return error_response(
                503,
                f"{self.seen.cap} signatures were accepted within the tolerance of "
                f"{format_duration(tolerance)}: try again later",
                retry_after=str(wait),
            )
        return None

    @property
    def _what(self) -> str:
        """The timestamp's name in messages."""
        where = "t= in X-Signature-256" if self.params.combined else self.params.timestamp_header
        return f"timestamp ({where})"

    def _timestamped(self, request: HttpRequest) -> tuple[str, list[str]] | str:
        """``(timestamp, candidate hex signatures)`` from the headers, or what is wrong."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if self.params.combined:
            return _combined(signature)
        header = str(self.params.timestamp_header)
        timestamp = request.headers.get(header.lower(), "").strip()
        if not timestamp:
            return f"an '{header}: <unix seconds>' is required"
        if not signature.startswith("sha256="):
            return "an 'X-Signature-256: sha256=...' is required"
        return timestamp, [signature.removeprefix("sha256=").strip().lower()]

    def _stale(self, timestamp: str, now: float) -> str | None:
        """What is wrong with ``timestamp`` at ``now``, or None when it is fresh."""
        what = self._what
        if not _UNIX_SECONDS.fullmatch(timestamp):
            return f"the {what} {timestamp[:40]!r} is not unix seconds"
        tolerance = self.params.tolerance
        off = now - int(timestamp)
        if abs(off) <= tolerance:
            return None
        # Whole seconds, rounded up: "5m1s old", never "5m old" beyond a tolerance of 5m.
        by = format_duration(math.ceil(abs(off)))
        limit = format_duration(tolerance)
        if off > 0:
            return f"the {what} is {by} old, more than the tolerance of {limit}"
        return f"the {what} is {by} in the future, more than the tolerance of {limit} (clocks?)"

    def _unauthorized(self, request: HttpRequest, message: str) -> HttpResponse:
        # The listener publishes ``webhook.unauthorized`` for every 401 of a hook.
        headers = {"www_authenticate": "Bearer"} if self.params.auth == "bearer" else {}
        return error_response(401, message, **headers)


def _combined(signature: str) -> tuple[str, list[str]] | str:
    """``t=<unix seconds>,v1=<hex>[,v1=<hex>...]``: the timestamp and every ``v1`` (several
    while a secret is rotated); other schemes (``v0=``) are ignored."""
    required = "an 'X-Signature-256: t=<unix seconds>,v1=<hex>' is required"
    timestamps: list[str] = []
    candidates: list[str] = []
    for part in signature.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value.strip())
        elif key == "v1":
            candidates.append(value.strip().lower())
    if len(timestamps) > 1:
        return "the X-Signature-256 has more than one t="
    if not timestamps or not timestamps[0] or not candidates:
        return required
    return timestamps[0], candidates
