"""The built-in HTTP listener: a Starlette application served by uvicorn in the
orchestrator's own event loop.

Routes:

- ``POST /hooks/{trigger_id}``: the :class:`HttpTrigger` with that id answers (404 without one);
- ``POST /runners/{runner_id}/fire``: fire a runner now (``otai trigger``); needs
  ``Authorization: Bearer <orchestrator.http.token>``, and is refused (403) without a token;
- ``GET /health``: 200 with every runner's state;
- ``GET /status``: 200 with each runner's state, last run and next fire (``otai status``);
- ``GET /livez``: 200 while the event loop serves (it never asks a helpdesk);
- ``GET /readyz``: 200 once services are open and triggers armed, 503 with the reason while
  starting or stopping.

Errors are ``{"error": "..."}``: 400 malformed HTTP (and the connection closed), 404, 405 wrong
method, 413 a body over the limit (refused from ``Content-Length`` before it is read, or as
soon as a chunked body passes the limit). Connections are kept alive for
:attr:`Listener.idle_timeout` seconds between requests; at most
``orchestrator.http.max_connections`` are open at once (uvicorn answers 503 beyond).
:meth:`Listener.stop` stops accepting and closes every connection, idle or mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.secrets import SECRETS
from open_ticket_ai.errors import ComponentError
from open_ticket_ai.http.console import Console
from open_ticket_ai.http.messages import (
    HttpRequest,
    HttpResponse,
    bearer_matches,
    error_response,
)
from open_ticket_ai.http.routes import Routes
from open_ticket_ai.runtime.events import HttpRequestFailed, HttpRequestServed, ListenerStarted
from open_ticket_ai.runtime.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from open_ticket_ai.runtime.control import Control

__all__ = ["Listener", "start_listener"]

HOOKS_PREFIX = "/hooks/"
"""Where webhooks are reached: served by :class:`Routes` without Starlette's routing."""
MAX_HEAD_BYTES = 16_384
"""The largest request head (request line and headers) accepted."""
HEAD_TIMEOUT = 10.0
"""Seconds a client has to send a whole request head once it started one: a client that
trickles its head byte by byte (slowloris) is cut off then, however active it looks."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _malformed_body(message: str) -> bytes:
    return error_response(400, f"malformed HTTP request: {message}").encode()


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Answers go out as soon as they are written: without TCP_NODELAY, a kept-alive client's
    next answer waits for a delayed ACK (40 ms). asyncio sets it only on sockets it made."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _bad_request(transport: asyncio.Transport, message: str) -> None:
    """The project's JSON 400 for a request that breaks HTTP, then the connection closed."""
    body = _malformed_body(message)
    transport.write(
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"server: open-ticket-ai\r\nconnection: close\r\n\r\n" + body
    )
    transport.close()


class _WholeResponse:
    """What a request's cycle (uvicorn's httptools one) writes through: the head of a response
    whose body has a known, non-zero length is held until the body's first write and goes out
    with it, so that a small answer (every webhook's) is one send and one segment, not two.

    Anything else passes straight through: the ``100 Continue``, chunked and empty responses,
    HEAD; closing first writes a head still held (the body never came)."""

    __slots__ = ("_cycle", "_head", "_head_seen", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        elif not self._head_seen and self._cycle.response_started:
            # The first write once the response started is its head (see the cycle's send).
            self._head_seen = True
            cycle = self._cycle
            if (
                cycle.chunked_encoding is False
                and cycle.expected_content_length > 0
                and cycle.scope["method"] != "HEAD"
            ):
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class _Guarded:
    """Mixed into uvicorn's protocols: TCP_NODELAY, the project's JSON 400 for a request
    that breaks HTTP, a deadline for a whole request head (it must be complete within
    ``head_timeout`` of its first byte, else the connection is closed), and with httptools
    each response's head and body written at once (:class:`_WholeResponse`)."""

    transport: asyncio.Transport
    cycle: Any
    head_timeout: float = HEAD_TIMEOUT
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _no_delay(transport)
        super().connection_made(transport)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        # Armed only for a head still incomplete once these bytes are parsed (the deadline
        # counts from them): a head that arrives whole, as nearly every one does, costs no
        # timer.
        if self._in_head():
            if self._head_deadline is None and not self.transport.is_closing():
                loop = asyncio.get_running_loop()
                self._head_deadline = loop.call_later(self.head_timeout, self._head_expired)
        elif self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def on_headers_complete(self) -> None:
        """httptools' callback (h11 has none): the new request's cycle writes through a
        :class:`_WholeResponse`."""
        super().on_headers_complete()  # type: ignore[misc]
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _WholeResponse(self.transport, cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        _bad_request(self.transport, msg)

    def _in_head(self) -> bool:
        """Between two requests, or inside a head: no request is being answered."""
        return self.cycle is None or self.cycle.response_complete

    def _head_expired(self) -> None:
        self._head_deadline = None
        if self._in_head() and not self.transport.is_closing():
            self.transport.close()


def _protocol(head_timeout: float = HEAD_TIMEOUT) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (the faster parser) where httptools is installed, else
    its h11 one (which refuses two ``Content-Length``\\s itself); both :class:`_Guarded`."""
    base: type[asyncio.Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    except ImportError:
        base = H11Protocol
    return type("_Protocol", (_Guarded, base), {"head_timeout": head_timeout})


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the orchestrator owns SIGINT/SIGTERM and
    stops the listener first at shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class Listener:
    """A running listener on :attr:`port`; :meth:`stop` stops accepting and closes every
    connection. Requests never block the loop: a fire only starts a run's task."""

    idle_timeout: float = 30.0
    """Seconds a kept-alive connection may wait for its next request before it is closed."""

    def __init__(self, config: HttpListenerConfig, control: Control) -> None:
        self.config = config
        self.control = control
        self.bus = control.bus
        self.port = config.port
        self._routes = Routes(config, control)
        if self._routes.token:
            SECRETS.add([self._routes.token])
        self.metrics: Metrics | None = None
        """The Prometheus metrics, fed from the bus (``orchestrator.http.metrics: true``)."""
        if config.metrics:
            self.metrics = Metrics(control.bus, runner_ids=control.runner_ids)
        self.console: Console | None = Console(config, control) if config.console else None
        """The operator's console (``orchestrator.http.console: true``)."""
        self.app = Starlette(
            routes=[
                Route("/livez", self._livez),
                Route("/readyz", self._readyz),
                Route("/metrics", self._metrics),
                *(self.console.routes() if self.console is not None else ()),
            ],
            middleware=self.console.middleware if self.console is not None else None,
            exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
        )
        # What no route above matches (not even by path, which would be a 405) goes to the
        # routes of :class:`Routes`.
        self.app.router.default = self._legacy
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        host = self.config.host
        try:
            sock = socket.create_server((host, self.config.port), reuse_port=False)
        except OSError as exc:
            raise ComponentError(
                f"orchestrator.http: cannot listen on {host}:{self.config.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._strict,
            interface="asgi3",
            http=_protocol(self.config.head_timeout),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=True,
            timeout_keep_alive=max(1, round(self.idle_timeout)),
            timeout_graceful_shutdown=1,
            limit_concurrency=self.config.max_connections,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self._server = _Server(config)
        self._serving = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[sock]), name="otai-http"
        )
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped it
                raise ComponentError(f"orchestrator.http: the server on {host} did not start")
            await asyncio.sleep(0.005)
        self.bus.publish(
            ListenerStarted(host=host, port=self.port, console=self.console is not None)
        )

    async def stop(self) -> None:
        """Stop accepting, close every connection (idle or mid-request) and wait for them."""
        if self.metrics is not None:
            self.metrics.close()
        if self.console is not None:
            self.console.close()
        server, serving = self._server, self._serving
        if server is None or serving is None:
            return
        server.should_exit = True
        server.force_exit = True  # open connections are closed, not waited for
        for connection in list(server.server_state.connections):
            connection.shutdown()
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(serving, 5.0)
        self._server = self._serving = None

    # -- routes ---------------------------------------------------------------------------

    async def _strict(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what h11 lets through but a server must not guess at, then serve.

        Webhooks (``/hooks/...``) go straight to the routes of :class:`Routes`: no Starlette
        route matches them (they would reach the router's default, :meth:`_legacy`, after
        every route was tried), and the console's session middleware is not for them."""
        if scope["type"] == "http":
            problem = _broken(scope)
            if problem is not None:
                reply = error_response(400, f"malformed HTTP request: {problem}")
                await _send(send, reply, close=True)
                return
            if scope["path"].startswith(HOOKS_PREFIX):
                await self._legacy(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _livez(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, request: Request) -> Response:
        reason = self.control.readiness()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    async def _metrics(self, request: Request) -> Response:
        if self.metrics is None:
            return JSONResponse({"error": "metrics are off: set orchestrator.http.metrics"}, 404)
        token = self._routes.token
        if token is not None and not bearer_matches(request.headers.get("authorization"), token):
            return JSONResponse(
                {"error": "a valid 'Authorization: Bearer <token>' is required"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def _legacy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The routes of :class:`Routes`, as plain ASGI: their answers and errors are
        already HTTP responses, and a body is read only once the head allows it."""
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        client = scope.get("client")
        request = HttpRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            client=str(client[0]) if client else "",
        )
        reply, close = await self._answer(request, receive)
        await _send(send, reply, close=close)
        if not self.bus.wants(HttpRequestServed):  # the log at INFO, no metrics: nobody
            return
        # The path as sent (not decoded): nothing a client encodes can forge a log line.
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("ascii", "replace").partition("?")[0]
        self.bus.publish(
            HttpRequestServed(
                method=request.method,
                path=path,
                status=reply.status,
                client=request.client,
                duration=time.perf_counter() - started,
            )
        )

    async def _answer(self, request: HttpRequest, receive: Receive) -> tuple[HttpResponse, bool]:
        """The response, and whether to close the connection after it (a body left unread)."""
        try:
            route = self._routes.route(request)
        except Exception as exc:  # a trigger's bug: answer 500, keep serving
            return self._internal_error(request, exc), False
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        if isinstance(route, HttpResponse):
            return route, has_body and request.headers.get("content-length") != "0"
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > route.limit:
            return _too_large(route.limit), True
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return error_response(400, "the client went away mid-request"), True
            body = message.get("body", b"")
            size += len(body)
            if size > route.limit:
                return _too_large(route.limit), True
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = HttpRequest(
            request.method, request.path, request.headers, b"".join(chunks), request.client
        )
        try:
            return route.handle(whole), False
        except Exception as exc:
            return self._internal_error(request, exc), False

    def _internal_error(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        self.bus.publish(HttpRequestFailed(method=request.method, path=request.path, error=exc))
        return error_response(500, f"internal error: {type(exc).__name__}")


def _broken(scope: Scope) -> str | None:
    """Why a request head h11 accepted is refused anyway, or None."""
    if scope.get("http_version") not in ("1.0", "1.1"):
        return f"HTTP/{scope.get('http_version')} is not supported"
    size = 0
    framing = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if name == b"content-length":
            framing |= 1
        elif name == b"transfer-encoding":
            framing |= 2
    if framing == 3:
        return "both Content-Length and Transfer-Encoding"
    if size > MAX_HEAD_BYTES:
        return f"the request head is larger than {MAX_HEAD_BYTES} bytes"
    return None


_SERVER = (b"server", b"open-ticket-ai")
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")


async def _send(send: Send, reply: HttpResponse, *, close: bool) -> None:
    body = reply.encode()
    headers = [(b"content-length", b"%d" % len(body)), _SERVER]
    if body:
        headers.append(_JSON)
    if reply.headers:
        headers.extend(
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()
        )
    if close:
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own errors (a wrong method on ``/livez``) in the project's JSON form."""
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _too_large(limit: int) -> HttpResponse:
    return error_response(413, f"the body is larger than {limit} bytes")


async def start_listener(config: HttpListenerConfig, control: Control) -> Listener:
    """Start listening on ``config.host:config.port`` (port 0: a free one, logged); raise
    ComponentError when the address cannot be bound."""
    listener = Listener(config, control)
    await listener.start()
    return listener
