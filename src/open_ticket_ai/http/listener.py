"""The built-in HTTP listener: webhooks, manual fires and a health check, on asyncio streams
with ``h11`` (no web framework).

Routes:

- ``POST /hooks/{trigger_id}``: the :class:`HttpTrigger` with that id answers (404 without one);
- ``POST /runners/{runner_id}/fire``: fire a runner now (``otai trigger``); needs
  ``Authorization: Bearer <orchestrator.http.token>``, and is refused (403) without a token;
- ``GET /health``: 200 with every runner's state;
- ``GET /status``: 200 with each runner's state, last run and next fire (``otai status``).

Errors are ``{"error": "..."}``: 400 malformed HTTP, 404, 405 wrong method, 413 a body over
the limit (refused from ``Content-Length`` before it is read, or as soon as a chunked body
passes the limit). Connections are kept alive; a connection idle (or stalled mid-request) for
:attr:`Listener.idle_timeout` seconds is closed. :meth:`Listener.stop` closes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import h11

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.errors import ComponentError
from open_ticket_ai.http.messages import (
    HttpRequest,
    HttpResponse,
    error_response,
)
from open_ticket_ai.http.routes import Routes
from open_ticket_ai.runtime.events import (
    HttpConnectionFailed,
    HttpRequestFailed,
    HttpRequestServed,
    ListenerStarted,
)

if TYPE_CHECKING:
    from open_ticket_ai.runtime.control import Control

__all__ = ["Listener", "start_listener"]

MAX_HEAD_BYTES = 16_384
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
READ_CHUNK = 65_536
LINGER_SECONDS = 2.0


class _Closed(Exception):
    """The client went away (or stalled) mid-request: drop the connection quietly."""


class Listener:
    """A running listener on :attr:`port`; :meth:`stop` stops accepting and closes every
    connection. Requests never block the loop: a fire only starts a run's task."""

    idle_timeout: float = 30.0
    """Seconds a connection may wait for (the rest of) a request before it is closed."""

    def __init__(self, config: HttpListenerConfig, control: Control) -> None:
        self.config = config
        self.control = control
        self.bus = control.bus
        self.port = config.port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._routes = Routes(config, control)
        self._closing = False

    async def start(self) -> None:
        host = self.config.host
        try:
            self._server = await asyncio.start_server(self._on_connection, host, self.config.port)
        except OSError as exc:
            raise ComponentError(
                f"orchestrator.http: cannot listen on {host}:{self.config.port}: {exc.strerror}"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self.bus.publish(ListenerStarted(host=host, port=self.port))

    async def stop(self) -> None:
        """Stop accepting, close every connection (idle or mid-request) and wait for them."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        pending = list(self._connections)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connections ----------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if not self._closing and await self._serve(reader, writer):
                await self._linger(reader, writer)
            writer.close()
        except (_Closed, OSError):
            pass  # a client that leaves or stalls is normal; its connection just ends
        except Exception as exc:  # a bug here must cost one connection, never the listener
            self.bus.publish(HttpConnectionFailed(error=exc))
        finally:
            self._connections.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After answering a request whose body was not read (413, 401, ...): stop writing
        and discard what the client still sends for a moment, so that closing does not reset
        the connection before the client has read the answer."""
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_SECONDS):
                while await reader.read(READ_CHUNK):
                    pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer requests until the connection ends; True when input is left unread."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else ""
        while True:
            try:
                event = await self._next_event(conn, reader)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
                    reply = error_response(status, f"malformed HTTP request: {exc}")
                    await self._send(conn, writer, reply, close=True)
                    self._log("?", "?", status, client, time.perf_counter())
                return True
            if not isinstance(event, h11.Request):
                return False  # ConnectionClosed
            started = time.perf_counter()
            method = event.method.decode("ascii", "replace")
            target = event.target.decode("ascii", "replace")
            request = HttpRequest(
                method=method,
                path=unquote(target.partition("?")[0]),
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers},
                client=client,
            )
            try:
                reply, complete = await self._respond(conn, reader, writer, request)
            except h11.RemoteProtocolError as exc:
                reply, complete = error_response(400, f"malformed HTTP request: {exc}"), False
            await self._send(conn, writer, reply, close=not complete)
            # The path as sent (not decoded): nothing a client encodes can forge a log line.
            self._log(method, target.partition("?")[0], reply.status, client, started)
            if not complete:
                return True
            if conn.our_state is h11.MUST_CLOSE:
                return False
            conn.start_next_cycle()

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(self.idle_timeout):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                raise _Closed from None
            conn.receive_data(data)

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        reply: HttpResponse,
        *,
        close: bool,
    ) -> None:
        body = reply.encode()
        headers = [("content-length", str(len(body))), ("server", "open-ticket-ai")]
        if body:
            headers.append(("content-type", "application/json"))
        headers.extend(reply.headers.items())
        if close:
            headers.append(("connection", "close"))
        reason = _REASONS.get(reply.status, b"")
        data = conn.send(h11.Response(status_code=reply.status, headers=headers, reason=reason))
        data = data or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        writer.write(data)
        try:
            async with asyncio.timeout(self.idle_timeout):
                await writer.drain()
        except TimeoutError:
            raise _Closed from None

    def _log(self, method: str, path: str, status: int, client: str, started: float) -> None:
        self.bus.publish(
            HttpRequestServed(
                method=method,
                path=path,
                status=status,
                client=client,
                duration=time.perf_counter() - started,
            )
        )

    # -- requests -------------------------------------------------------------------------

    async def _respond(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: HttpRequest,
    ) -> tuple[HttpResponse, bool]:
        """The response, and whether the request was read in full (else: close after it)."""
        try:
            route = self._routes.route(request)
        except Exception as exc:  # a trigger's bug: answer 500, keep serving
            route = self._internal_error(request, exc)
        if isinstance(route, HttpResponse):
            # Answered without its body: keep the connection only when there was none.
            return route, isinstance(conn.next_event(), h11.EndOfMessage)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > route.limit:
            return _too_large(route.limit), False
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > route.limit:
                    return _too_large(route.limit), False
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise _Closed
        whole = HttpRequest(
            request.method, request.path, request.headers, b"".join(chunks), request.client
        )
        try:
            return route.handle(whole), True
        except Exception as exc:
            return self._internal_error(request, exc), True

    def _internal_error(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        self.bus.publish(HttpRequestFailed(method=request.method, path=request.path, error=exc))
        return error_response(500, f"internal error: {type(exc).__name__}")


def _too_large(limit: int) -> HttpResponse:
    return error_response(413, f"the body is larger than {limit} bytes")


async def start_listener(config: HttpListenerConfig, control: Control) -> Listener:
    """Start listening on ``config.host:config.port`` (port 0: a free one, logged); raise
    ComponentError when the address cannot be bound."""
    listener = Listener(config, control)
    await listener.start()
    return listener
