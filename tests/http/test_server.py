"""The listener as an exposed service: liveness and readiness, requests that break HTTP, the
connection cap and the listen address."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from tests.http.test_listener import TOKEN, config, raw, start, stop
from tests.support.http_server import HttpServer
from tests.support.otai_process import OtaiProcess

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.http.listener import _WholeResponse


@pytest.fixture
def server() -> HttpServer:
    with HttpServer() as srv:
        yield srv  # type: ignore[misc]


async def test_livez_and_readyz_answer_while_the_orchestrator_fires(server: HttpServer) -> None:
    instance, main = await start(config(server))
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            live = await client.get("/livez")
            ready = await client.get("/readyz")
            wrong = await client.post("/livez")
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert wrong.status_code == 405
        assert set(wrong.json()) == {"error"}
    finally:
        await stop(instance, main)


async def test_readyz_says_503_with_the_reason_once_stopping(server: HttpServer) -> None:
    instance, main = await start(config(server))
    try:
        instance.orchestrator._firing = False  # the first step of shutdown
        instance.orchestrator.stopped_by_request = True
        async with httpx.AsyncClient(base_url=instance.url) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "reason": "stopping"}
    finally:
        await stop(instance, main)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        b"POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /health HTTP/7.0\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    ],
    ids=["two-content-lengths", "content-length-and-chunked", "unknown-version", "huge-head"],
)
async def test_requests_that_break_http_get_400_and_the_connection_closed(
    server: HttpServer, head: bytes
) -> None:
    instance, main = await start(config(server))
    try:
        answer = await raw(instance, head)  # reads until the server closes
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b'"error":"malformed HTTP request' in answer
        assert b"connection: close" in answer.lower()
    finally:
        await stop(instance, main)


async def test_connections_beyond_the_cap_get_503(server: HttpServer) -> None:
    instance, main = await start(config(server, "{port: 0, token: t, max_connections: 2}"))
    held = []
    try:
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", instance.listener.port)
            held.append(writer)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        async with httpx.AsyncClient(base_url=instance.url) as client:
            refused = await client.get("/health")
        assert refused.status_code == 503
    finally:
        for writer in held:
            writer.close()
        await stop(instance, main)


async def test_each_answer_leaves_in_one_write_head_and_body_together(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, main = await start(config(server))
    port = instance.listener.port
    sent: list[bytes] = []
    transport_type = asyncio.selector_events._SelectorSocketTransport
    write = transport_type.write

    def recording(self: asyncio.Transport, data: bytes) -> None:
        if self.get_extra_info("sockname")[1] == port:  # the listener's side
            sent.append(bytes(data))
        write(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(transport_type, "write", recording)
    fire = f"POST /runners/quick/fire HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    requests = [
        (fire + "Content-Length: 7\r\n\r\n").encode() + b'{"a":1}',
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in requests:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = b"" if request.startswith(b"HEAD") else await reader.readexactly(length)
                assert sent[-1] == head + body, request
            # Expect: 100-continue: the interim answer goes out at once, then the whole answer.
            writer.write((fire + "Content-Length: 7\r\nExpect: 100-continue\r\n\r\n").encode())
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
                b"HTTP/1.1 100 Continue\r\n\r\n"
            )
            writer.write(b'{"a":1}')
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 202 ")
            assert sent[-1].startswith(head)
        finally:
            writer.close()
            await writer.wait_closed()
        assert len(sent) == len(requests) + 2
    finally:
        await stop(instance, main)


class _Cycle:
    def __init__(self, method: str = "POST") -> None:
        self.scope = {"method": method}
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _started(cycle: _Cycle, *, length: int | None) -> None:
    """What uvicorn's cycle has set by the time it writes a response's head."""
    cycle.response_started = True
    cycle.chunked_encoding = length is None
    cycle.expected_content_length = length or 0


def test_a_head_is_held_only_for_a_body_of_known_length_and_never_lost() -> None:
    # Known length: the head waits for the body's first write; later chunks pass through.
    transport, cycle = _Transport(), _Cycle()
    whole = _WholeResponse(transport, cycle)  # type: ignore[arg-type]
    whole.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response starts
    _started(cycle, length=6)
    whole.write(b"HEAD\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.expected_content_length = 3  # the cycle counts the chunk off before writing it
    whole.write(b"abc")
    whole.write(b"def")
    assert transport.writes[1:] == [b"HEAD\r\n\r\nabc", b"def"]
    # Chunked, empty and HEAD answers: the head goes out at once.
    for method, length in (("POST", None), ("POST", 0), ("HEAD", 6)):
        transport, cycle = _Transport(), _Cycle(method)
        whole = _WholeResponse(transport, cycle)  # type: ignore[arg-type]
        _started(cycle, length=length)
        whole.write(b"HEAD\r\n\r\n")
        assert transport.writes == [b"HEAD\r\n\r\n"], (method, length)
    # A body that never comes: closing sends the head held, then closes.
    transport, cycle = _Transport(), _Cycle()
    whole = _WholeResponse(transport, cycle)  # type: ignore[arg-type]
    _started(cycle, length=6)
    whole.write(b"HEAD\r\n\r\n")
    assert not whole.is_closing()
    whole.close()
    assert transport.writes == [b"HEAD\r\n\r\n"]
    assert whole.is_closing()


def test_an_empty_host_is_a_config_error_not_every_interface() -> None:
    with pytest.raises(ValidationError, match="host"):
        HttpListenerConfig(host="")


async def test_metrics_count_the_runs_exactly_and_need_the_token(server: HttpServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    instance, main = await start(config(server, "{port: 0, token: t, metrics: true}"))
    try:
        runner = instance.orchestrator.runners["quick"]
        async with httpx.AsyncClient(base_url=instance.url) as client:
            for n in range(3):
                fired = await client.post(
                    "/runners/quick/fire", headers={"Authorization": "Bearer t"}, json={"n": n}
                )
                assert fired.status_code == 202
                for _ in range(500):
                    if runner.stats.runs == n + 1:
                        break
                    await asyncio.sleep(0.01)
            refused = await client.get("/metrics")
            answer = await client.get("/metrics", headers={"Authorization": "Bearer t"})
        assert refused.status_code == 401
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        runs = {
            (sample.labels["runner"], sample.labels["status"]): sample.value
            for family in text_string_to_metric_families(answer.text)
            if family.name == "otai_runs"
            for sample in family.samples
            if sample.name == "otai_runs_total"
        }
        assert runs == {("quick", "succeeded"): 3.0}
    finally:
        await stop(instance, main)


async def test_metrics_are_off_unless_asked_for(server: HttpServer) -> None:
    instance, main = await start(config(server))
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            answer = await client.get("/metrics")
        assert answer.status_code == 404
        assert set(answer.json()) == {"error"}
    finally:
        await stop(instance, main)


async def test_a_head_trickled_byte_by_byte_is_cut_off_at_its_deadline(
    server: HttpServer,
) -> None:
    instance, main = await start(config(server, "{port: 0, token: t, head_timeout: 0.5}"))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", instance.listener.port)
        started = asyncio.get_running_loop().time()
        writer.write(b"GET /health HTTP/1.1\r\n")
        closed = False
        for _ in range(40):  # a header byte every 0.05 s: never idle, never done
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            try:
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        elapsed = asyncio.get_running_loop().time() - started
        writer.close()
        assert closed, "the trickling client was never cut off"
        assert elapsed < 1.5
        async with httpx.AsyncClient(base_url=instance.url) as client:  # others are served
            assert (await client.get("/health")).status_code == 200
    finally:
        await stop(instance, main)


SITE_LIMIT = """
import resource

resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
"""


def test_out_of_file_descriptors_the_accept_error_is_logged_once_a_minute(
    tmp_path: Path,
) -> None:
    # A process allowed 48 descriptors, held open by 80 idle connections: asyncio's accept
    # loop fails every second. Each failure reaches the log at most once a minute.
    (tmp_path / "sitecustomize.py").write_text(SITE_LIMIT)
    path = tmp_path / "config.yml"
    path.write_text(
        "orchestrator:\n"
        "  state_path: false\n"
        "  ledger: false\n"
        "  http: {port: 0, token: t, max_connections: 1000, head_timeout: 60s}\n"
        "  runners:\n"
        "    - id: r\n"
        "      on: [{id: tick, params: {seconds: 30}}]\n"
        "      run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n"
    )
    held: list[socket.socket] = []
    with OtaiProcess("run", str(path), "--log-format", "json", pythonpath=tmp_path) as otai:
        port = otai.wait_for_event("orchestrator.listening", timeout=15)["port"]
        try:
            for _ in range(80):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(4.5)  # four or five failed accept rounds
            otai.send_signal(signal.SIGTERM)
            code = otai.wait(15)
        finally:
            for sock in held:
                sock.close()
    assert code == 0, otai.log_text()
    errors = [e for e in otai.find("loop.error") if "accept" in e["problem"]]
    assert len(errors) == 1, otai.log_text()
    raw_lines = [line for line in otai.other_lines if "out of system resource" in line]
    assert raw_lines == []
