"""The HTTP side the helpdesk fakes share: a threaded server on 127.0.0.1 that hands every
request to the fake and writes back what it answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "App", "FakeTransport"]

Answer = tuple[int, dict[str, str], bytes]
"""Status, response headers, body."""
App = Callable[[str, str, dict[str, str], bytes], Answer]
"""``(method, target, lower-cased request headers, raw body) -> Answer``."""


class _Server(ThreadingHTTPServer):
    app: App
    daemon_threads = True
    request_queue_size = 64  # the default 5 drops bursts of concurrent connections for 1 s


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server.app(self.command, self.path, headers, raw)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: each fake keeps its own record of what it saw."""


class FakeTransport:
    """Serves ``app`` on a free port of 127.0.0.1 between ``start()`` and ``stop()``."""

    def __init__(self, app: App) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.app = app
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
