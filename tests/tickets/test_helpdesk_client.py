"""The shared helpdesk client against a real HTTP server on 127.0.0.1: reads are retried,
writes that may have landed never are (AnswerLostError), 429/503 honour Retry-After, and
write_once checks whether a write landed before sending it again."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from tests.support.http_server import HttpServer, Reply

from open_ticket_ai import AnswerLostError, TicketSystemError
from open_ticket_ai.tickets.adapters.http import HelpdeskClient, write_once


@pytest.fixture
def server() -> HttpServer:
    with HttpServer() as srv:
        yield srv  # type: ignore[misc]


def client(url: str, **options: float) -> HelpdeskClient:
    return HelpdeskClient("desk", url, retries=2, backoff=0.0, **options)  # type: ignore[arg-type]


async def test_a_read_is_retried_after_a_5xx(server: HttpServer) -> None:
    server.respond("/t", Reply(502, text="bad gateway"), Reply(200, json={"ok": 1}))
    desk = client(server.url)
    try:
        assert await desk.request("GET", "/t") == {"ok": 1}
    finally:
        await desk.close()
    assert len(server.hits("/t")) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_write_answered_500_is_not_sent_again(server: HttpServer, method: str) -> None:
    server.respond("/notes", Reply(500, text="saved, then crashed"), Reply(201, json={"id": 2}))
    desk = client(server.url)
    try:
        with pytest.raises(AnswerLostError, match="may have applied it"):
            await desk.request(method, "/notes", json_body={"body": "x"})
    finally:
        await desk.close()
    assert len(server.hits("/notes")) == 1


async def test_a_write_whose_answer_times_out_is_not_sent_again(server: HttpServer) -> None:
    server.respond("/notes", Reply(201, json={"id": 1}, delay=1.0))
    desk = HelpdeskClient("desk", server.url, retries=2, backoff=0.0, timeout=0.2)
    try:
        with pytest.raises(AnswerLostError, match="ReadTimeout"):
            await desk.request("POST", "/notes", json_body={"body": "x"})
    finally:
        await desk.close()
    server.wait_for_hits(1, "/notes")
    await asyncio.sleep(0.3)  # a second attempt would have arrived by now
    assert len(server.hits("/notes")) == 1


async def test_a_write_refused_with_503_is_sent_again_after_retry_after(
    server: HttpServer,
) -> None:
    server.respond(
        "/notes",
        Reply(503, text="busy", headers={"Retry-After": "0.3"}),
        Reply(201, json={"id": 3}),
    )
    desk = client(server.url)
    started = time.monotonic()
    try:
        assert await desk.request("POST", "/notes", json_body={}) == {"id": 3}
    finally:
        await desk.close()
    assert time.monotonic() - started >= 0.3
    assert len(server.hits("/notes")) == 2


async def test_a_retry_after_beyond_the_call_deadline_fails_at_once_saying_so(
    server: HttpServer,
) -> None:
    server.respond(
        "/t", Reply(429, text="slow down", headers={"Retry-After": "3600"}), Reply(200, json={})
    )
    desk = HelpdeskClient("desk", server.url, retries=1, backoff=0.0, call_timeout=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(TicketSystemError, match=r"asked to wait 1h.*2s \(call_timeout\)"):
            await desk.request("GET", "/t")
    finally:
        await desk.close()
    assert time.monotonic() - started < 1.0
    assert len(server.hits("/t")) == 1


async def test_a_hung_helpdesk_costs_a_call_at_most_its_call_timeout(server: HttpServer) -> None:
    server.respond("/t", Reply(200, json={}, delay=5.0))
    desk = HelpdeskClient("desk", server.url, retries=10, backoff=0.0, timeout=0.3, call_timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(TicketSystemError, match=r"the most its 1s \(call_timeout\) allows"):
            await desk.request("GET", "/t")
    finally:
        await desk.close()
    assert time.monotonic() - started < 2.5
    assert 2 <= len(server.hits("/t")) <= 4  # 0.3 s attempts within 1 s, not 11 of them


async def test_an_answer_dripped_byte_by_byte_cannot_outlast_the_call_timeout() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))  # each byte well within the read timeout
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    dripper = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = dripper.sockets[0].getsockname()[1]
    desk = HelpdeskClient(
        "desk", f"http://127.0.0.1:{port}", retries=0, timeout=0.5, call_timeout=1.0
    )
    started = time.monotonic()
    try:
        with pytest.raises(TicketSystemError, match=r"no complete answer within 1s"):
            await desk.request("GET", "/t")
    finally:
        await desk.close()
        dripper.close()
    assert time.monotonic() - started < 2.0


async def test_a_write_that_never_left_is_sent_again() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    desk = client(url)
    try:
        with pytest.raises(TicketSystemError, match="failed after 3 attempts") as caught:
            await desk.request("POST", "/notes", json_body={})
    finally:
        await desk.close()
    assert not isinstance(caught.value, AnswerLostError)


async def test_write_once_checks_before_sending_again() -> None:
    sent: list[int] = []
    applied: list[int] = []

    async def write() -> str:
        sent.append(1)
        applied.append(1)  # the helpdesk applies it ...
        raise AnswerLostError("desk: POST /notes: the answer was lost")  # ... the answer is lost

    async def landed() -> str | None:
        return "note-1" if applied else None

    assert await write_once(write, landed, attempts=3) == "note-1"
    assert len(sent) == 1


async def test_write_once_sends_again_what_did_not_land_and_gives_up_in_time() -> None:
    sent: list[int] = []

    async def write() -> str:
        sent.append(1)
        if len(sent) < 2:
            raise AnswerLostError("lost before it was applied")
        return "note-2"

    async def nothing() -> str | None:
        return None

    assert await write_once(write, nothing, attempts=3) == "note-2"
    assert len(sent) == 2

    async def always_lost() -> str:
        sent.append(1)
        raise AnswerLostError("lost")

    with pytest.raises(AnswerLostError):
        await write_once(always_lost, nothing, attempts=2)
