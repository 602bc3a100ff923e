"""An HTTP proxy on 127.0.0.1 that forwards to one upstream and can lose its answers.

    with FakeZammad() as fake, FaultProxy(fake.url) as proxy:
        proxy.inject("close_after_saving", path="/api/v1/tickets")
        ...  # point the adapter at proxy.url: the ticket is created, the answer is lost
        assert [h.fault for h in proxy.hits] == ["close_after_saving", None, ...]

Every request is forwarded as it came (method, target with its query, headers except the
hop-by-hop ones, body; ``Host`` names the upstream) on a fresh upstream connection, and the
answer is relayed with its status, headers and body. Towards the client the proxy speaks
HTTP/1.1 with keep-alive. ``proxy.url`` is ``http://127.0.0.1:<port>`` followed by the
upstream's own path, so it replaces the upstream's URL as it is.

The fault modes all forward the request first and read the upstream's whole answer (so the
helpdesk has applied the write), then lose that answer:

``500_after_saving``
    answers ``500 Internal Server Error`` with nginx's small HTML page (the connection stays
    open for the next request);
``close_after_saving``
    closes the connection without writing a byte;
``cut_response``
    writes the status line and headers (with the real Content-Length) and the first half of
    the body, then closes; an empty body is cut inside the header block instead;
``timeout_after_saving``
    writes nothing for ``proxy.hold`` seconds, then closes (closing the proxy ends the wait).

An upstream that cannot be reached (or does not answer within ``upstream_timeout``) gets the
client a 502 (or 504), whatever fault was armed. Closing the proxy ends idle keep-alive
connections, held answers and pending upstream calls, and joins every thread.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple, get_args
from urllib.parse import urlsplit

__all__ = ["FAULT_MODES", "FaultMode", "FaultProxy", "Hit"]

FaultMode = Literal[
    "500_after_saving", "close_after_saving", "cut_response", "timeout_after_saving"
]
FAULT_MODES: tuple[str, ...] = get_args(FaultMode)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers the proxy writes itself (towards upstream, or towards the client).
_REQUEST_OWN = frozenset({"host", "content-length", "expect"})
_RESPONSE_OWN = frozenset({"content-length"})

_NGINX_500 = (
    b"<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    b"<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class Hit(NamedTuple):
    """One request the proxy saw: its method, its target (path and query) and the fault it
    got (None: forwarded and relayed as is). A plain tuple too."""

    method: str
    target: str
    fault: str | None


@dataclass
class _Fault:
    mode: str
    method: str | None
    path: str | re.Pattern[str] | None
    remaining: int

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        if isinstance(self.path, re.Pattern):
            return self.path.search(target) is not None
        if self.path in target:
            return True
        try:
            return re.search(self.path, target) is not None
        except re.error:
            return False


class _Upstream(NamedTuple):
    scheme: str
    host: str
    port: int
    netloc: str
    path: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # still joined by server_close (block_on_close)
    request_queue_size = 64
    owner: FaultProxy

    def process_request(self, request: Any, client_address: Any) -> None:
        # In the serving thread: once shutdown() returns, every connection is registered.
        self.owner._track(request, add=True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) or a proxy closing under a call is expected.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Lost(Exception):
    """The answer is lost: close the client connection without writing anything more."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive client cannot hold a thread for longer
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        owner = self.server.owner
        if self.request_version == "HTTP/1.0":
            self.close_connection = True  # no HTTP/1.0 keep-alive: answer, then close
        target = _origin_form(self.path)
        try:
            body = self._read_body()
        except ValueError as exc:
            self._answer(400, [("Content-Type", "text/plain")], str(exc).encode())
            self.close_connection = True
            return
        fault = owner._arrived(self.command, target)
        try:
            status, reason, headers, payload = owner._forward(
                self.command, target, self._forward_headers(), body
            )
        except TimeoutError:
            self._answer(504, [("Content-Type", "text/plain")], b"upstream timed out")
            return
        except (OSError, http.client.HTTPException) as exc:
            text = f"upstream failed: {type(exc).__name__}: {exc}".encode()
            self._answer(502, [("Content-Type", "text/plain")], text)
            return
        try:
            if fault is None:
                self._relay(status, reason, headers, payload)
            else:
                self._lose(fault, status, reason, headers, payload)
        except _Lost:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _read_body(self) -> bytes | None:
        """The request body, None when the request had none (no length, not chunked)."""
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in encoding:
            return _read_chunked(self.rfile)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        try:
            size = int(length)
        except ValueError:
            raise ValueError(f"bad Content-Length: {length!r}") from None
        data = self.rfile.read(size)
        if len(data) != size:
            raise ValueError("the request body ended early")
        return data

    def _forward_headers(self) -> list[tuple[str, str]]:
        named = {
            part.strip().lower()
            for value in self.headers.get_all("Connection", [])
            for part in value.split(",")
        }
        return [
            (name, value)
            for name, value in self.headers.items()
            if name.lower() not in _HOP_BY_HOP | _REQUEST_OWN | named
        ]

    def _relay(
        self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes
    ) -> None:
        head = self._head(status, reason, headers, payload)
        self.wfile.write(head + payload if self._has_body(status) else head)  # one send
        self.wfile.flush()

    def _lose(
        self,
        fault: str,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        payload: bytes,
    ) -> None:
        if fault == "500_after_saving":
            extra = [("Server", "nginx"), ("Date", formatdate(usegmt=True))]
            self._answer(500, [*extra, ("Content-Type", "text/html")], _NGINX_500)
            return
        if fault == "cut_response":
            head = self._head(status, reason, headers, payload)
            if payload and self._has_body(status):
                self.wfile.write(head + payload[: len(payload) // 2])
            else:  # nothing to cut in the body: cut the header block
                self.wfile.write(head[: head.index(b"\r\n") + 2])
            self.wfile.flush()
        elif fault == "timeout_after_saving":
            self.server.owner._closing.wait(self.server.owner.hold)
        raise _Lost  # close_after_saving and the rest: close without (more of) an answer

    def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self._relay(status, http.client.responses.get(status, ""), headers, payload)

    def _head(
        self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes
    ) -> bytes:
        lines = [f"{self.protocol_version} {status} {reason}"]
        named = {
            part.strip().lower()
            for name, value in headers
            if name.lower() == "connection"
            for part in value.split(",")
        }
        for name, value in headers:
            low = name.lower()
            if low in _HOP_BY_HOP or low in named:
                continue
            if low in _RESPONSE_OWN and self._has_body(status):
                continue  # the proxy writes the real length of what it relays
            lines.append(f"{name}: {value}")
        if self._has_body(status):
            lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _has_body(self, status: int) -> bool:
        return self.command != "HEAD" and status >= 200 and status not in (204, 304)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``hits`` is the log."""


def _origin_form(target: str) -> str:
    """``/path?query`` from a request target (an absolute-form target loses its origin)."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target


def _read_chunked(rfile: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = rfile.readline(65537)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError(f"bad chunk size line: {line!r}") from None
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers: dropped
            return b"".join(chunks)
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise ValueError("the chunked request body ended early")
        chunks.append(chunk)
        rfile.readline(65537)  # the CRLF after the chunk


class FaultProxy:
    """A threaded HTTP/1.1 proxy on a free port of 127.0.0.1 to ``upstream``; a context
    manager. ``hold`` is how long ``timeout_after_saving`` keeps quiet before closing;
    ``upstream_timeout`` bounds each upstream call (past it the client gets a 504)."""

    def __init__(self, upstream: str, *, hold: float = 5.0, upstream_timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, not {upstream!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._upstream = _Upstream(
            parts.scheme, parts.hostname, port, parts.netloc, parts.path.rstrip("/")
        )
        self.hold = hold
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._hits: list[Hit] = []
        self._connections = 0
        self._open_sockets: set[socket.socket] = set()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FaultProxy:
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
        """Stop accepting, end every open connection (idle, held or waiting on upstream) and
        join every thread. Closing twice is harmless."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                sockets = list(self._open_sockets)
            for sock in sockets:
                with contextlib.suppress(OSError):  # already gone
                    sock.shutdown(socket.SHUT_RDWR)
            self._server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` plus the upstream URL's path (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the proxy is not started; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._upstream.path}"

    def inject(
        self,
        mode: FaultMode,
        *,
        method: str | None = "POST",
        path: str | re.Pattern[str] | None = None,
        times: int = 1,
    ) -> None:
        """Arm ``mode`` for the next ``times`` requests with ``method`` (None: any) whose
        target (path and query) contains ``path`` as a substring or matches it as a regex
        (``re.search``; None: any target). Faults armed earlier are matched first."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(FAULT_MODES)}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._faults.append(_Fault(mode, method, path, times))

    @property
    def hits(self) -> list[Hit]:
        """A copy of every request seen so far, oldest first, with the fault each got."""
        with self._lock:
            return list(self._hits)

    @property
    def connections(self) -> int:
        """How many client connections the proxy has accepted (keep-alive reuse shows)."""
        with self._lock:
            return self._connections

    def reset(self) -> None:
        """Disarm every fault and forget the hits and connections (``hold`` is kept)."""
        with self._lock:
            self._faults.clear()
            self._hits.clear()
            self._connections = 0

    # -- called from the handler threads --

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._open_sockets.add(sock)
                self._connections += 1
            else:
                self._open_sockets.discard(sock)

    def _arrived(self, method: str, target: str) -> str | None:
        """Record the request and take the first armed fault it matches."""
        with self._lock:
            fault: str | None = None
            for armed in self._faults:
                if armed.matches(method, target):
                    fault = armed.mode
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._faults.remove(armed)
                    break
            self._hits.append(Hit(method, target, fault))
            return fault

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request upstream on a fresh connection; its status, reason, headers and
        whole body (de-chunked; any content coding kept)."""
        up = self._upstream
        conn: http.client.HTTPConnection
        if up.scheme == "https":
            conn = http.client.HTTPSConnection(
                up.host,
                up.port,
                timeout=self.upstream_timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(up.host, up.port, timeout=self.upstream_timeout)
        try:
            conn.connect()
            sock = conn.sock
            with self._lock:
                if self._closing.is_set():
                    raise ConnectionAbortedError("the proxy is closing")
                self._open_sockets.add(sock)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", up.netloc)
                for name, value in headers:
                    conn.putheader(name, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                payload = response.read()
                return response.status, response.reason, response.getheaders(), payload
            finally:
                with self._lock:
                    self._open_sockets.discard(sock)
        finally:
            conn.close()
