"""HttpRequestPipe: one HTTP request, its answer as data."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from open_ticket_ai.core.component import ParamsModel
from open_ticket_ai.core.durations import Duration
from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import PipeContext

__all__ = ["HttpRequestParams", "HttpRequestPipe"]

_EXCERPT = 200


class HttpRequestParams(ParamsModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: Duration = Field(30.0, gt=0)
    expect_status: list[int] | None = None
    """Accepted statuses; default: any 2xx."""

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value


class HttpRequestPipe(Pipe[HttpRequestParams]):
    """Sends the request. Result ``data``: ``status``, ``headers``, ``json`` (when the response
    is JSON) and ``text``. A status outside ``expect_status``, a connection error or a timeout
    is a failed result naming the URL."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        if p.json_body is not None and p.body is not None:
            return PipeResult.failure("give either 'json' or 'body', not both")
        try:
            async with httpx.AsyncClient(timeout=p.timeout) as client:
                response = await client.request(
                    p.method,
                    p.url,
                    headers=p.headers,
                    params={k: v for k, v in p.query.items() if v is not None},
                    json=p.json_body,
                    content=p.body,
                )
        except httpx.TimeoutException:
            return PipeResult.failure(f"{p.method} {p.url}: timed out after {p.timeout:g}s")
        except httpx.HTTPError as exc:
            return PipeResult.failure(f"{p.method} {p.url}: {type(exc).__name__}: {exc}")
        data: dict[str, Any] = {
            "status": response.status_code,
            "headers": dict(response.headers),
            "text": response.text,
        }
        if "json" in response.headers.get("content-type", ""):
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
                f"{p.method} {p.url} answered {response.status_code}: {excerpt}", data
            )
        return PipeResult.success(data)
