"""HttpRequestPipe: one HTTP request, its answer as data."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import weakref
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from open_ticket_ai import Action, Duration, ParamsModel, Pipe, PipeContext, PipeResult
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.pipes.records import redact_url
from open_ticket_ai.core.resources import on_shutdown

__all__ = ["HttpRequestParams", "HttpRequestPipe"]

_EXCERPT = 200

_SCALARS = (str, int, float, bool)


class HttpRequestParams(ParamsModel):
    """One request: ``url`` (http or https), ``method``, ``headers``, ``query``, a ``json`` or
    a text ``body`` (not both), a ``timeout`` and the statuses that count as success."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    """``None`` values are left out; a list repeats the key."""
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: Duration = Field(30.0, gt=0)
    expect_status: list[int] | None = None
    """Accepted statuses; default: any 2xx."""

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers", mode="before")
    @classmethod
    def _headers_as_text(cls, value: Any) -> Any:
        # YAML (and a one-expression template) gives numbers and booleans; a header is text.
        if not isinstance(value, dict):
            return value
        return {key: _header_text(item) for key, item in value.items()}

    @field_validator("query")
    @classmethod
    def _query_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            items = item if isinstance(item, list) else [item]
            if item is not None and not all(isinstance(i, _SCALARS) for i in items):
                raise ValueError(
                    f"{key!r} must be text, a number, true/false, null or a list of those, "
                    f"got {item!r}"
                )
        return value

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one status, or leave it out for any 2xx")
            wrong = [status for status in value if not 100 <= status <= 599]
            if wrong:
                raise ValueError(f"HTTP statuses are 100 to 599, got {wrong}")
        return value

    @field_validator("url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid URL {value!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestParams:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either 'json' or 'body', not both")
        return self


def _header_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: not recorded as actions, and sent in a dry run too."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: once per process, not per request.
    return ssl.create_default_context()


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _client() -> httpx.AsyncClient:
    """The event loop's one pooled client (connections are kept alive and reused between
    runs; the TLS context is built once); closed when the loop's orchestrator stops."""
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None or client.is_closed:
        client = _CLIENTS[loop] = httpx.AsyncClient(verify=_tls_context())
        on_shutdown(client.aclose)
    return client


class HttpRequestPipe(Pipe[HttpRequestParams]):
    """Sends the request. Result ``data``: ``status``, ``headers``, ``json`` (when the response
    is JSON) and ``text``. A status outside ``expect_status`` is a failed result naming the URL
    (with the data); a connection error or a timeout is a failed result whose ``error`` is the
    httpx exception, so ``retry: {on: [ConnectError]}`` can name it. A request other than
    GET, HEAD or OPTIONS is recorded as an action; in a dry run it is not sent (the step is
    skipped)."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        changes = p.method not in _SAFE_METHODS
        if changes and ctx.dry_run:
            ctx.record_action(Action.http_request(p.method, p.url, None))
            return PipeResult.skip(f"dry run: {p.method} {redact_url(p.url)} not sent")
        shown = redact_url(p.url)
        try:
            response = await _client().request(
                p.method,
                p.url,
                headers=p.headers,
                params={k: v for k, v in p.query.items() if v is not None},
                json=p.json_body,
                content=p.body,
                timeout=p.timeout,
            )
        except httpx.TimeoutException as exc:
            return PipeResult.failure(
                f"{p.method} {shown}: timed out after {format_duration(p.timeout)}", error=exc
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return PipeResult.failure(f"{p.method} {shown}: {type(exc).__name__}: {exc}", error=exc)
        if changes:
            ctx.record_action(Action.http_request(p.method, p.url, response.status_code))
        data: dict[str, Any] = {
            "status": response.status_code,
            "headers": dict(response.headers),
            "text": response.text,
        }
        if "json" in response.headers.get("content-type", "").lower():
            with contextlib.suppress(ValueError):
                data["json"] = response.json()
        ok = (
            response.status_code in p.expect_status
            if p.expect_status is not None
            else 200 <= response.status_code < 300
        )
        if not ok:
            excerpt = " ".join(response.text.split())[:_EXCERPT]
            return PipeResult.failure(
                f"{p.method} {shown} answered {response.status_code}: {excerpt}", data
            )
        return PipeResult.success(data)
