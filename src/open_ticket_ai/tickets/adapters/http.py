"""HelpdeskClient: the HTTP client every REST adapter shares: retries, timeouts, clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from open_ticket_ai import TicketNotFoundError, TicketSystemError

__all__ = ["HelpdeskClient"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_EXCERPT = 300


class HelpdeskClient:
    """An ``httpx.AsyncClient`` for one helpdesk, opened with its service and closed with it.

    5xx answers (and 429), connection errors and timeouts are retried ``retries`` times with
    exponential backoff; a 4xx answer raises TicketSystemError at once with the system's own
    message; 404 raises TicketNotFoundError. Every message names the system and the call.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        verify: bool = True,
        on_response: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.system = system
        self._on_response = on_response
        """Told of each attempt: method, status (0 without an answer) and seconds taken."""
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            auth=auth,
            timeout=timeout,
            verify=verify,
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
    ) -> Any:
        """Send one request and return its decoded JSON (None for an empty body).

        ``not_found`` is the message of the TicketNotFoundError a 404 raises."""
        call = f"{self.system}: {method} {path}"
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._client.request(method, path, params=params, json=json_body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self._answered(method, 0, started)
                if attempt > self.retries:
                    raise TicketSystemError(
                        f"{call} failed after {attempt} attempts: {type(exc).__name__}: {exc}"
                    ) from exc
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            self._answered(method, response.status_code, started)
            if response.status_code in _RETRY_STATUSES and attempt <= self.retries:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            return self._decode(call, response, not_found, attempt)

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
            excerpt = " ".join(response.text.split())[:_EXCERPT]
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            raise TicketSystemError(f"{call} answered {status}{tries}: {excerpt}", status=status)
        if not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            excerpt = " ".join(response.text.split())[:_EXCERPT]
            raise TicketSystemError(
                f"{call} answered {status} with a body that is not JSON: {excerpt}",
                status=status,
            ) from None
