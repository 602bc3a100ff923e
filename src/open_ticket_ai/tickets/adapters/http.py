"""HelpdeskClient: the HTTP client every REST adapter shares: retries, timeouts, clear errors.

Reads (and other idempotent requests) are retried on 5xx, 429, timeouts and lost
connections. A write that is not idempotent (POST, PATCH) is retried only when it cannot have
reached the helpdesk (the connection was refused or never opened) or the helpdesk said it did
not take it (429, 503); any other failure after it was sent raises
:class:`~open_ticket_ai.AnswerLostError`, and the adapter checks whether the write landed
before it tries again (:func:`write_once`). ``Retry-After`` on 429 and 503 is honoured, within
the call's deadline (``call_timeout``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from pydantic import Field

from open_ticket_ai import (
    AnswerLostError,
    Duration,
    Note,
    ParamsModel,
    TicketNotFoundError,
    TicketSystemError,
)
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.secrets import SECRETS

__all__ = ["HelpdeskClient", "HelpdeskParams", "new_note", "write_once"]

_T = TypeVar("_T")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_TAKEN = frozenset({429, 503})
"""Statuses that say the request was not processed: a write may be sent again."""
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before the request left: nothing can have landed."""
_EXCERPT = 300


class HelpdeskClient:
    """An ``httpx.AsyncClient`` for one helpdesk, opened with its service and closed with it.

    5xx answers (and 429), connection errors and timeouts are retried ``retries`` times with
    exponential backoff; a 4xx answer raises TicketSystemError at once with the system's own
    message; 404 raises TicketNotFoundError. Every message names the system and the call.
    Each attempt may take ``timeout`` seconds, and one call ``call_timeout`` in all,
    retries and their pauses included: a hung helpdesk costs a run at most that per call.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 10.0,
        call_timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        verify: bool = True,
        max_connections: int = 10,
        on_response: Callable[[str, int, float], None] | None = None,
        on_retry: Callable[[str, int, float, str], None] | None = None,
    ) -> None:
        self.system = system
        self._on_response = on_response
        """Told of each attempt: method, status (0 without an answer) and seconds taken."""
        self._on_retry = on_retry
        """Told before each retry: the call, the attempt that failed, the delay, why."""
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.call_timeout = call_timeout
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            auth=auth,
            timeout=timeout,
            verify=verify,
            # Bounded: a for_each with concurrency above it waits for a free connection.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        not_found: str | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON (None for an empty body).

        ``not_found`` is the message of the TicketNotFoundError a 404 raises. ``idempotent``
        (default: by the method) says whether sending it twice is harmless; a request that
        is not is never retried once it may have been applied (AnswerLostError)."""
        body, _ = await self.exchange(
            method,
            path,
            params=params,
            json_body=json_body,
            not_found=not_found,
            idempotent=idempotent,
        )
        return body

    async def exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        not_found: str | None = None,
        idempotent: bool | None = None,
    ) -> tuple[Any, httpx.Headers]:
        """:meth:`request`, returning the answer's headers too (a created record's
        ``Location``, say): the same retries, deadline and errors."""
        call = f"{self.system}: {method} {path}"
        safe = method.upper() in _IDEMPOTENT if idempotent is None else idempotent
        deadline = time.monotonic() + self.call_timeout
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            left = deadline - time.monotonic()
            try:
                # httpx bounds each phase (connect, each read) by ``timeout``; this bounds the
                # whole call, so that a helpdesk dripping its answer cannot hold it longer.
                async with asyncio.timeout(left):
                    response = await self._client.request(
                        method,
                        path,
                        params=params,
                        json=json_body,
                        timeout=left if left < self.timeout else httpx.USE_CLIENT_DEFAULT,
                    )
            except (TimeoutError, httpx.TimeoutException, httpx.TransportError) as exc:
                self._answered(method, 0, started)
                reason = _reason(exc, self.call_timeout)
                if not safe and not isinstance(exc, _NOT_SENT):
                    raise AnswerLostError(
                        f"{call}: the answer was lost ({reason}); the helpdesk may have applied it"
                    ) from exc
                pause = self.backoff * 2 ** (attempt - 1)
                if attempt > self.retries:
                    raise TicketSystemError(
                        f"{call} failed after {attempt} attempts: {reason}"
                    ) from exc
                if not self._time_for(pause, deadline):
                    raise TicketSystemError(
                        f"{call} failed after {attempt} attempts, the most its "
                        f"{format_duration(self.call_timeout)} (call_timeout) allows: {reason}"
                    ) from exc
                self._retrying(f"{method} {path}", attempt, pause, reason)
                await asyncio.sleep(pause)
                continue
            status = response.status_code
            self._answered(method, status, started)
            if status in _RETRY_STATUSES:
                if not safe and status not in _NOT_TAKEN:
                    excerpt = _excerpt(response)
                    raise AnswerLostError(
                        f"{call} answered {status}: {excerpt}; the helpdesk may have applied it",
                        status=status,
                    )
                if attempt <= self.retries:
                    pause = self._pause(response, attempt)
                    if self._time_for(pause, deadline):
                        self._retrying(f"{method} {path}", attempt, pause, f"answered {status}")
                        await asyncio.sleep(pause)
                        continue
                    raise TicketSystemError(
                        f"{call} answered {status} (asked to wait {format_duration(pause)}), "
                        f"and {format_duration(self.call_timeout)} (call_timeout) leaves no "
                        f"time for attempt {attempt + 1}: {_excerpt(response)}",
                        status=status,
                    )
            return self._decode(call, response, not_found, attempt), response.headers

    @staticmethod
    def _time_for(pause: float, deadline: float) -> bool:
        """Whether an attempt can still begin after ``pause``, before the call's deadline."""
        return time.monotonic() + pause < deadline

    def _pause(self, response: httpx.Response, attempt: int) -> float:
        """Seconds before the next attempt: ``Retry-After`` when the helpdesk gives one, else
        exponential backoff."""
        backoff = float(self.backoff * 2 ** (attempt - 1))
        header = response.headers.get("retry-after")
        if not header:
            return backoff
        try:
            wait = float(header)
        except ValueError:
            try:
                wait = parsedate_to_datetime(header).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                return backoff
        return max(wait, 0.0)

    def _retrying(self, call: str, attempt: int, pause: float, reason: str) -> None:
        if self._on_retry is not None:
            with contextlib.suppress(Exception):
                self._on_retry(call, attempt, pause, reason)

    def _answered(self, method: str, status: int, started: float) -> None:
        if self._on_response is not None:
            # Reporting must never fail a helpdesk call.
            with contextlib.suppress(Exception):
                self._on_response(method, status, time.perf_counter() - started)

    @staticmethod
    def _decode(call: str, response: httpx.Response, not_found: str | None, attempt: int) -> Any:
        status = response.status_code
        if status == 404 and not_found is not None:
            raise TicketNotFoundError(f"{call}: {not_found}", status=status)
        if status >= 400:
            excerpt = _excerpt(response)
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            raise TicketSystemError(f"{call} answered {status}{tries}: {excerpt}", status=status)
        if not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            excerpt = _excerpt(response)
            raise TicketSystemError(
                f"{call} answered {status} with a body that is not JSON: {excerpt}",
                status=status,
            ) from None


class HelpdeskParams(ParamsModel):
    """How a helpdesk adapter talks HTTP: its timeouts, retries and TLS check."""

    timeout: Duration = Field(10.0, gt=0)
    """How long one attempt may wait to connect, and for each part of the answer."""
    call_timeout: Duration = Field(30.0, gt=0)
    """The longest one call may take, its retries and their pauses included: a hung
    helpdesk costs a run at most this per call."""
    retries: int = Field(3, ge=0, le=10)
    """How often a 5xx answer, a timeout or a lost connection is retried."""
    retry_backoff: float = Field(0.5, ge=0)
    verify_tls: bool = True
    max_connections: int = Field(10, ge=1, le=100)
    """Connections open to the helpdesk at most (kept alive between calls); calls beyond
    it, from a ``for_each`` with a higher ``concurrency``, wait for one to be free."""

    def http_settings(self) -> dict[str, Any]:
        """These settings by name, for an adapter's params built from another shape."""
        return {name: getattr(self, name) for name in HelpdeskParams.model_fields}

    def client(
        self,
        system: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        on_response: Callable[[str, int, float], None] | None = None,
        on_retry: Callable[[str, int, float, str], None] | None = None,
    ) -> HelpdeskClient:
        """The client these settings describe, for ``system`` at ``base_url``."""
        return HelpdeskClient(
            system,
            base_url,
            headers=headers,
            auth=auth,
            timeout=self.timeout,
            call_timeout=self.call_timeout,
            retries=self.retries,
            backoff=self.retry_backoff,
            verify=self.verify_tls,
            max_connections=self.max_connections,
            on_response=on_response,
            on_retry=on_retry,
        )


def _reason(exc: BaseException, limit: float) -> str:
    if isinstance(exc, TimeoutError):  # the call's deadline
        return f"no complete answer within {format_duration(limit)} (call_timeout)"
    return f"{type(exc).__name__}: {exc}"


def _excerpt(response: httpx.Response) -> str:
    """The start of an answer's text, on one line, without the configured secrets."""
    return SECRETS.redact(" ".join(response.text.split())[:_EXCERPT])


def new_note(
    notes: list[Note],
    note: Note,
    known: set[str | None],
    *,
    strip: bool = False,
    subject: bool = True,
) -> Note | None:
    """The note among ``notes`` (oldest first) that adding ``note`` made, the newest such:
    one whose id is not among ``known`` (the ids before it was sent), with the same body
    (``strip``: but for surrounding whitespace, for helpdesks that trim it) and, with
    ``subject``, the same subject. How an adapter tells whether a lost note landed."""
    body = note.body.strip() if strip else note.body
    for added in reversed(notes):
        if added.id in known or (added.body.strip() if strip else added.body) != body:
            continue
        if not subject or added.subject == note.subject:
            return added
    return None


async def write_once(
    write: Callable[[], Awaitable[_T]],
    landed: Callable[[], Awaitable[_T | None]],
    *,
    attempts: int = 3,
) -> _T:
    """``write()``, applied once: when its answer is lost (AnswerLostError), ``landed()``
    says whether it was applied after all (its result) or not (None, and it is sent again, at
    most ``attempts`` times in all)."""
    for attempt in range(1, attempts + 1):
        try:
            return await write()
        except AnswerLostError:
            found = await landed()
            if found is not None:
                return found
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
