"""The HTTP listener in-process: routes, errors, limits, manual fires, keep-alive, stopping.

Every test runs a real Orchestrator with the listener on a free port of 127.0.0.1 and talks
to it with httpx or a raw socket (for what well-behaved clients never send).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.http_server import HttpServer, Reply

from open_ticket_ai import ComponentError, ConfigError, build, parse_config
from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.triggers.base import FireOutcome, FireStatus
from open_ticket_ai.http.listener import Listener, start_listener
from open_ticket_ai.http.messages import fire_response
from open_ticket_ai.runtime.events import HttpRequestServed
from open_ticket_ai.runtime.orchestrator import Orchestrator

TOKEN = "manual-token"


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer() as srv:
        srv.respond("/slow", Reply(200, text="ok", delay=1.0))
        yield srv


@dataclass
class Running:
    orchestrator: Orchestrator
    listener: Listener

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.port}"


async def start(config: str) -> tuple[Running, asyncio.Task[int]]:
    orchestrator = Orchestrator(
        build(parse_config(textwrap.dedent(config), "test.yml")),
        shutdown_timeout=0.1,
        listener=start_listener,
    )
    main = asyncio.create_task(orchestrator.run())
    for _ in range(200):
        if orchestrator._listener is not None:
            return Running(orchestrator, orchestrator._listener), main
        await asyncio.sleep(0.01)
    raise AssertionError("the listener did not start")


async def stop(running: Running, main: asyncio.Task[int]) -> None:
    running.orchestrator.request_stop()
    assert await asyncio.wait_for(main, 10) == 0


def config(server: HttpServer, http: str = f"{{port: 0, token: {TOKEN}}}") -> str:
    return f"""
        orchestrator:
          http: {http}
          runners:
            - id: quick
              on: [{{id: hourly, params: {{hours: 1}}}}]
              run:
                {{id: x, use: ExpressionPipe, params: {{expression: "{{{{ trigger.payload }}}}"}}}}
            - id: slow
              on: [hourly]
              run: {{id: s, use: HttpRequestPipe, params: {{url: "{server.url}/slow"}}}}
        """


@pytest.fixture
async def running(server: HttpServer) -> AsyncIterator[Running]:
    instance, main = await start(config(server))
    try:
        yield instance
    finally:
        await stop(instance, main)


async def raw(running: Running, data: bytes, *, read_until_close: bool = True) -> bytes:
    """Send ``data`` on a fresh connection and return what comes back until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.listener.port)
    try:
        writer.write(data)
        await writer.drain()
        if read_until_close:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
        await writer.wait_closed()


# -- routes -------------------------------------------------------------------------------


async def test_port_zero_picks_a_free_port_and_logs_it(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    instance, main = await start(config(server))
    try:
        assert instance.listener.port > 0
        logged = [r for r in caplog.records if getattr(r, "event", "") == "orchestrator.listening"]
        assert len(logged) == 1
        assert logged[0].fields == {"host": "127.0.0.1", "port": instance.listener.port}  # type: ignore[attr-defined]
    finally:
        await stop(instance, main)


async def test_each_request_served_is_published_and_logged_at_debug(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    instance, main = await start(config(server))
    served: list[HttpRequestServed] = []
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            assert (await client.get("/health")).status_code == 200  # nobody wants it yet
            instance.orchestrator.bus.subscribe(served.append, HttpRequestServed)
            assert (await client.get("/health?x=1")).status_code == 200
            caplog.set_level(logging.DEBUG, "open_ticket_ai")
            assert (await client.get("/nowhere")).status_code == 404
    finally:
        await stop(instance, main)
    assert [(e.method, e.path, e.status) for e in served] == [
        ("GET", "/health", 200),
        ("GET", "/nowhere", 404),
    ]
    logged = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "http.request"]
    assert len(logged) == 1
    assert logged[0].startswith("GET /nowhere -> 404 in ")


async def test_health_reports_every_runner(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        fired = await client.post("/runners/quick/fire", headers=auth())
        assert fired.status_code == 202
        await asyncio.sleep(0.05)
        response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["runners"]["quick"]["runs"] == 1
    assert body["runners"]["quick"]["last_status"] == "succeeded"
    assert body["runners"]["quick"]["run_id"] == "quick-1"
    assert body["runners"]["slow"] == {
        "running": False,
        "run_id": None,
        "running_for_s": 0.0,
        "runs": 0,
        "failures": 0,
        "skips": 0,
        "last_status": None,
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("POST", "/hooks/missing", 404),
        ("POST", "/hooks/hourly", 404),  # a trigger, but not one reached over HTTP
        ("GET", "/hooks/missing", 405),
        ("POST", "/health", 405),
        ("GET", "/runners/quick/fire", 405),
    ],
)
async def test_errors_are_small_json(running: Running, method: str, path: str, status: int) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.request(method, path, headers=auth())
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    if status == 405:
        assert response.headers["allow"] in ("GET", "POST")


async def test_malformed_http_gets_400(running: Running) -> None:
    answer = await raw(running, b"NOT AN HTTP REQUEST\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"error":"malformed HTTP request' in answer


async def test_a_body_over_the_limit_gets_413_before_it_is_sent(running: Running) -> None:
    # Only the head is sent: the answer must come from Content-Length alone.
    head = (
        f"POST /runners/quick/fire HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 50000000\r\n\r\n"
    ).encode()
    answer = await raw(running, head, read_until_close=False)
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_a_chunked_body_is_cut_off_at_the_limit(server: HttpServer) -> None:
    instance, main = await start(
        config(server, f"{{port: 0, token: {TOKEN}, max_body_bytes: 100}}")
    )
    try:
        head = (
            f"POST /runners/quick/fire HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = b"50\r\n" + b"x" * 80 + b"\r\n"
        answer = await raw(instance, head + chunk + chunk, read_until_close=False)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert instance.orchestrator.runners["quick"].stats.runs == 0
    finally:
        await stop(instance, main)


async def test_expect_100_continue_is_honoured(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.listener.port)
    try:
        writer.write(
            f"POST /runners/quick/fire HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Length: 7\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b'{"a":1}')
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert final.startswith(b"HTTP/1.1 202 ")
    finally:
        writer.close()
        await writer.wait_closed()


# -- manual fires -------------------------------------------------------------------------


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_manual_fire_starts_a_run_and_refuses_a_busy_runner(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        first = await client.post("/runners/slow/fire", headers=auth())
        second = await client.post("/runners/slow/fire", headers=auth())
        quick = await client.post("/runners/quick/fire", headers=auth(), json={"n": 7})
    assert first.status_code == 202
    assert first.json() == {"runs": [{"runner": "slow", "run_id": "slow-1"}], "refused": []}
    assert second.status_code == 409
    assert "busy" in second.json()["error"]
    assert "slow-1" in second.json()["error"]
    assert second.json()["refused"][0]["runner"] == "slow"
    assert quick.status_code == 202
    await asyncio.sleep(0.05)
    assert running.orchestrator.runners["quick"].last_result.data == {"value": {"n": 7}}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (auth("wrong"), 401), ({"Authorization": TOKEN}, 401), (auth(), 404)],
)
async def test_manual_fire_needs_the_token_and_a_known_runner(
    running: Running, headers: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.post("/runners/ghost/fire", headers=headers)
    assert response.status_code == status
    if status == 404:
        assert "no runner 'ghost'" in response.json()["error"]
    assert all(r.stats.runs == 0 for r in running.orchestrator.runners.values())


async def test_manual_fires_are_disabled_without_a_token(server: HttpServer) -> None:
    instance, main = await start(config(server, "{port: 0}"))
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            response = await client.post("/runners/quick/fire", headers=auth())
        assert response.status_code == 403
        assert "manual fires are disabled" in response.json()["error"]
    finally:
        await stop(instance, main)


async def test_the_token_may_be_an_env_template(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTAI_LISTENER_TEST_TOKEN", "from-env")
    instance, main = await start(
        config(server, '{port: 0, token: "{{ env.OTAI_LISTENER_TEST_TOKEN }}"}')
    )
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            literal = await client.post(
                "/runners/quick/fire", headers=auth("{{ env.OTAI_LISTENER_TEST_TOKEN }}")
            )
            rendered = await client.post("/runners/quick/fire", headers=auth("from-env"))
        assert literal.status_code == 401
        assert rendered.status_code == 202
    finally:
        await stop(instance, main)


async def test_manual_fire_with_a_body_that_is_not_json_gets_400(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.post("/runners/quick/fire", headers=auth(), content=b"{nope")
    assert response.status_code == 400
    assert running.orchestrator.runners["quick"].stats.runs == 0


# -- connections --------------------------------------------------------------------------


async def test_keep_alive_serves_requests_one_after_another(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.listener.port)
    try:
        for _ in range(3):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.startswith(b"content-length")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_clients_that_vanish_mid_request_do_not_hurt(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    for partial in (
        b"POST /runners/quick/fi",
        b"POST /runners/quick/fire HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
    ):
        _, writer = await asyncio.open_connection("127.0.0.1", running.listener.port)
        writer.write(partial)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    with socket.create_connection(("127.0.0.1", running.listener.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # then reset the connection
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get("/health")).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert running.orchestrator.runners["quick"].stats.runs == 0


async def test_stopping_closes_idle_and_half_sent_connections(server: HttpServer) -> None:
    instance, main = await start(config(server))
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", instance.listener.port)
    half_reader, half_writer = await asyncio.open_connection("127.0.0.1", instance.listener.port)
    try:
        idle_writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), 5)
        half_writer.write(b"POST /runners/quick/fire HTTP/1.1\r\nHost: x\r\n")
        await half_writer.drain()
        await asyncio.sleep(0.05)
        await stop(instance, main)
        # Both see the connection end at once (not after the 30 s idle timeout).
        await asyncio.wait_for(idle_reader.read(), 2)
        assert idle_reader.at_eof()
        assert await asyncio.wait_for(half_reader.read(), 2) == b""
    finally:
        for writer in (idle_writer, half_writer):
            writer.close()
            await writer.wait_closed()


async def test_a_port_in_use_is_a_clear_error(server: HttpServer) -> None:
    orchestrator = Orchestrator(build(parse_config(textwrap.dedent(config(server)), "t.yml")))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ComponentError, match=f"cannot listen on 127.0.0.1:{port}"):
            await start_listener(HttpListenerConfig(port=port), orchestrator)


async def test_a_token_template_with_an_unset_variable_is_a_clear_error(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = config(server, '{port: 0, token: "{{ env.OTAI_UNSET_TOKEN_FOR_TEST }}"}')
    monkeypatch.delenv("OTAI_UNSET_TOKEN_FOR_TEST", raising=False)
    # A config error at load, with its place: not a failure once the service runs.
    with pytest.raises(ConfigError, match=r"orchestrator\.http\.token.*OTAI_UNSET_TOKEN_FOR_TEST"):
        build(parse_config(textwrap.dedent(text), "t.yml"))


async def test_a_fire_kept_by_overlap_queue_one_is_accepted_as_queued(server: HttpServer) -> None:
    text = config(server).replace("- id: slow\n", "- id: slow\n              overlap: queue_one\n")
    instance, main = await start(text)
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            first = await client.post("/runners/slow/fire", headers=auth())
            second = await client.post("/runners/slow/fire", headers=auth())
        assert first.status_code == 202
        assert second.status_code == 202
        body = second.json()
        assert body["runs"] == []
        assert body["refused"] == []
        (queued,) = body["queued"]
        assert queued["runner"] == "slow"
    finally:
        await stop(instance, main)


def test_fire_response_answers_for_every_runner() -> None:
    started = FireOutcome("a", FireStatus.STARTED, "a-1")
    busy = FireOutcome(
        "b", FireStatus.BUSY, reason="runner 'b' is busy: run b-3 has been running for 2.0s"
    )
    stopping = FireOutcome("c", FireStatus.STOPPING, reason="the orchestrator is stopping")
    queued = FireOutcome("d", FireStatus.QUEUED, reason="queued: runner 'd' is busy with run d-1")

    mixed = fire_response("hook", [started, busy])
    assert mixed.status == 202
    assert mixed.body == {
        "runs": [{"runner": "a", "run_id": "a-1"}],
        "refused": [{"runner": "b", "reason": busy.reason}],
    }
    refused = fire_response("hook", [busy, stopping])
    assert refused.status == 409
    assert refused.body["error"] == f"{busy.reason}; {stopping.reason}"
    kept = fire_response("hook", [queued])
    assert kept.status == 202
    assert kept.body["queued"] == [{"runner": "d", "reason": queued.reason}]


BROKEN_PLUGIN = """
from open_ticket_ai import EventTrigger, NoParams


class BrokenHook(EventTrigger[NoParams]):
    needs_http = True
    max_body_bytes = None

    def check_headers(self, request):
        return None

    def handle_http(self, request, host):
        raise RuntimeError("plugin bug")
"""


async def test_a_trigger_that_raises_gets_500_and_the_listener_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "brokenhook.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    instance, main = await start(
        """
        open_ticket_ai:
          plugins: [brokenhook]
          orchestrator:
            http: {port: 0}
            runners:
              - id: r
                on: [{id: broken, use: BrokenHook}]
                run: {id: x, use: ExpressionPipe, params: {expression: x}}
        """
    )
    try:
        async with httpx.AsyncClient(base_url=instance.url) as client:
            broken = await client.post("/hooks/broken", content=b"{}")
            health = await client.get("/health")
        assert broken.status_code == 500
        assert broken.json() == {"error": "internal error: RuntimeError"}
        assert health.status_code == 200
        assert any("plugin bug" in r.getMessage() for r in caplog.records)
    finally:
        await stop(instance, main)
