"""A real HTTP server on 127.0.0.1 for tests: scripted replies per path, every request recorded.

    with HttpServer() as server:
        server.respond("/tickets", Reply(500), Reply(200, json={"ok": True}))
        ...  # point the code under test at f"{server.url}/tickets"
        hits = server.wait_for_hits(2, "/tickets")

Each connection serves one request (HTTP/1.0), so closing never waits on an idle keep-alive
connection. Closing wakes delayed replies (they are dropped), stops the server and joins
every thread.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["HttpServer", "Reply", "Request", "closed_port_url"]

_NO_JSON: Any = object()


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``json`` (sent as application/json) or ``text`` (text/plain) or
    nothing, with ``status``, extra ``headers``, and ``delay`` seconds of waiting first."""

    status: int = 200
    json: Any = _NO_JSON
    text: str | None = None
    content_type: str | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        """The body and its content type."""
        if self.json is not _NO_JSON and self.text is not None:
            raise ValueError("a Reply has either json or text, not both")
        if self.json is not _NO_JSON:
            return json.dumps(self.json).encode(), self.content_type or "application/json"
        return (self.text or "").encode(), self.content_type or "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Request:
    """One recorded request; ``at`` is ``time.monotonic()`` when it arrived, ``headers`` have
    lower-case names."""

    at: float
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # request threads are still joined by server_close (block_on_close)
    owner: HttpServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) is expected; anything else is worth seeing.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that connects and sends nothing cannot stall closing for long

    def _handle(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        owner = self.server.owner
        owner._record(
            Request(
                at=arrived,
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
        )
        reply = owner._next_reply(parts.path)
        if reply.delay > 0 and owner._closing.wait(reply.delay):
            return  # closing: drop the connection unanswered
        payload, content_type = reply.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""


class HttpServer:
    """A threaded HTTP server on a free port of 127.0.0.1, used as a context manager.

    Paths without a script answer 404; every request is recorded, scripted or not.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._hits: list[Request] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HttpServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop answering (a delayed reply is dropped), close the socket and join every
        thread. Closing twice is harmless; the port then refuses connections."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the request threads
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("the server is not started; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def respond(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with ``replies`` in turn; the last one then repeats."""
        if not replies:
            raise ValueError("give at least one Reply")
        with self._lock:
            self._scripts[path] = list(replies)

    def hits(self, path: str | None = None) -> list[Request]:
        """A copy of the requests so far (to ``path`` only, if given), oldest first."""
        with self._lock:
            return self._matching(path)

    def wait_for_hits(
        self, n: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Request]:
        """Block until ``n`` requests (to ``path``) have arrived and return them all; raise
        TimeoutError naming what did arrive if that takes longer than ``timeout`` seconds."""
        with self._lock:
            if self._lock.wait_for(lambda: len(self._matching(path)) >= n, timeout):
                return self._matching(path)
            seen = [f"{h.method} {h.path}" for h in self._hits]
        raise TimeoutError(f"wanted {n} hits to {path or 'any path'} in {timeout}s, got: {seen}")

    def _matching(self, path: str | None) -> list[Request]:
        return [h for h in self._hits if path is None or h.path == path]

    def _record(self, request: Request) -> None:
        with self._lock:
            self._hits.append(request)
            self._lock.notify_all()

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path)
            if not script:
                return Reply(404, text=f"no reply scripted for {path}")
            return script.pop(0) if len(script) > 1 else script[0]


def closed_port_url() -> str:
    """``http://127.0.0.1:<port>`` for a port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
