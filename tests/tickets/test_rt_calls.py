"""How many REST calls each operation of the Request Tracker adapter makes, counted by a
loopback proxy (tests/support/fault_proxy.py, no fault armed) in front of a real RT 5. The
lists are the table in docs/ticket-automation.md: a change that adds a call fails here.

Scripted servers cover what a healthy RT never does here (an answer without ``Location``, a
comment that did not land behind a lost answer)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.support.fault_proxy import FaultProxy
from tests.support.http_server import HttpServer, Reply
from tests.tickets.rt_server import (  # noqa: F401 (rt_server is a fixture)
    SETUP_SECONDS,
    RtServer,
    rt_server,
)

from open_ticket_ai.errors import AnswerLostError, TicketNotFoundError, TicketSystemError
from open_ticket_ai.tickets.adapters import rt as rt_adapter
from open_ticket_ai.tickets.adapters.rt import RequestTrackerParams, RequestTrackerTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Note, Priority, TicketChanges, TicketSearch

QUEUE = "Billing"
"""Where these tests open tickets (the other RT tests search Incoming and Paging)."""

SEARCH = ["GET /tickets", "POST /transactions", "POST /attachments"]
"""A search whose tickets' bodies are not known yet: the page, their Create transactions,
those transactions' texts."""


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(rt_server: RtServer) -> Iterator[FaultProxy]:  # noqa: F811
    with FaultProxy(rt_server.url) as counting:
        yield counting


def _adapter(url: str, server: RtServer) -> RequestTrackerTicketSystem:
    params = RequestTrackerParams(url=url, token=server.token, time_zone=server.time_zone)
    return RequestTrackerTicketSystem(params, id="rt")


@pytest.fixture
async def rt(
    proxy: FaultProxy,
    rt_server: RtServer,  # noqa: F811
) -> AsyncIterator[RequestTrackerTicketSystem]:
    """The adapter, talking to RT through the counting proxy."""
    system = _adapter(proxy.url, rt_server)
    await system.open()
    yield system
    await system.close()


@pytest.fixture
async def direct(rt_server: RtServer) -> AsyncIterator[RequestTrackerTicketSystem]:  # noqa: F811
    """Another adapter, straight to RT: to set up and look behind, uncounted."""
    system = _adapter(rt_server.url, rt_server)
    await system.open()
    yield system
    await system.close()


_TICKET = re.compile(r"^/ticket/\d+")


def calls(proxy: FaultProxy) -> list[str]:
    """The calls the proxy saw since its last reset, as ``METHOD /path`` with ticket ids as
    ``:id`` and without the query; then forgets them."""
    seen = []
    for hit in proxy.hits:
        path = hit.target.split("?", 1)[0].removeprefix("/REST/2.0")
        seen.append(f"{hit.method} {_TICKET.sub('/ticket/:id', path)}")
    proxy.reset()
    return seen


async def _new(system: RequestTrackerTicketSystem, subject: str) -> str:
    ticket = await system.create(
        NewTicket(subject=subject, body=f"body of {subject}", queue=QUEUE, priority=Priority.LOW)
    )
    return ticket.id


# Defined first so that it runs first when this module runs alone: it may install RT.
@pytest.mark.timeout(SETUP_SECONDS)
async def test_create_reads_the_new_ticket_once(
    rt: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    ticket = await rt.create(NewTicket(subject="counted", body="the body", queue=QUEUE))
    assert ticket.body == "the body"
    assert calls(proxy) == ["POST /ticket", *SEARCH]


async def test_a_search_reads_bodies_once_per_page_and_then_not_again(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    ids = [await _new(direct, f"searched {i}") for i in range(3)]
    since = (await direct.get(ids[0])).updated
    criteria = TicketSearch(queue=QUEUE, updated_since=since, limit=500)
    found = {t.id: t for t in await rt.search(criteria)}
    assert set(ids) <= found.keys()
    assert calls(proxy) == SEARCH
    assert {t.id: t for t in await rt.search(criteria)} == found  # the same, bodies known
    assert calls(proxy) == ["GET /tickets"]
    assert await rt.get(ids[1]) == found[ids[1]]
    assert calls(proxy) == ["GET /tickets"]


async def test_get_of_a_ticket_not_seen_before_reads_its_body(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    ticket = await direct.get(await _new(direct, "not seen"))
    assert await rt.get(ticket.id) == ticket
    assert calls(proxy) == SEARCH
    assert await rt.get(ticket.id) == ticket
    assert calls(proxy) == ["GET /tickets"]


@pytest.mark.parametrize("bound", ["_BODIES_KEPT", "_BODY_CHARS_KEPT"])
async def test_remembered_bodies_are_bounded_the_least_recently_used_forgotten(
    rt: RequestTrackerTicketSystem,
    direct: RequestTrackerTicketSystem,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    bound: str,
) -> None:
    # Two bodies, by number or by characters ("body of bounded N": 17 each).
    monkeypatch.setattr(rt_adapter, bound, 2 if bound == "_BODIES_KEPT" else 40)
    first, second, third = [await _new(direct, f"bounded {i}") for i in range(3)]
    for ticket in (first, second, third):
        await rt.get(ticket)
    calls(proxy)
    await rt.get(third)
    await rt.get(second)
    assert calls(proxy) == ["GET /tickets", "GET /tickets"]
    await rt.get(first)  # forgotten: read again, and now the third is the oldest
    assert calls(proxy) == SEARCH
    await rt.get(third)
    assert calls(proxy) == SEARCH


async def test_a_missing_ticket_costs_one_call(
    rt: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    with pytest.raises(TicketNotFoundError, match="no ticket"):
        await rt.get("999999")
    assert calls(proxy) == ["GET /tickets"]


async def test_notes_are_one_call_without_comments_and_two_with(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    key = await _new(direct, "notes counted")
    assert await rt.notes(key) == []
    assert calls(proxy) == ["POST /transactions"]
    await direct.add_note(key, Note(body="one"))
    assert [n.body for n in await rt.notes(key)] == ["one"]
    assert calls(proxy) == ["POST /transactions", "POST /attachments"]


async def test_a_note_after_reading_the_notes_is_one_call(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    """AddNotePipe's order: the notes (for the marker), then the note."""
    key = await _new(direct, "noted once")
    await rt.notes(key)
    calls(proxy)
    added = await rt.add_note(key, Note(subject="otai: triage", body="routed [otai:x]"))
    assert calls(proxy) == ["POST /ticket/:id/comment"]
    [stored] = await direct.notes(key)
    assert (added.id, added.subject, added.body) == (stored.id, stored.subject, stored.body)


async def test_a_note_on_its_own_reads_the_notes_first(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    key = await _new(direct, "noted alone")
    first = await rt.add_note(key, Note(body="first"))
    assert calls(proxy) == ["POST /transactions", "POST /ticket/:id/comment"]
    second = await rt.add_note(key, Note(body="first"))  # the same again, within seconds
    assert calls(proxy) == ["POST /ticket/:id/comment"]
    assert first.id != second.id
    assert [n.id for n in await direct.notes(key)] == [first.id, second.id]


async def test_an_update_is_the_change_and_one_read(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    key = await _new(direct, "moved")
    await rt.get(key)
    calls(proxy)
    moved = await rt.update(key, TicketChanges(queue="Incoming", priority=4, state="open"))
    assert (moved.queue, moved.priority, moved.state) == ("Incoming", Priority.HIGH, "open")
    assert moved.body == "body of moved"
    assert calls(proxy) == ["PUT /ticket/:id", "GET /tickets"]
    assert await rt.update(key, TicketChanges()) == moved
    assert calls(proxy) == ["GET /tickets"]


async def test_an_update_rt_refuses_still_names_rts_reason(
    rt: RequestTrackerTicketSystem, direct: RequestTrackerTicketSystem, proxy: FaultProxy
) -> None:
    key = await _new(direct, "refused")
    await rt.get(key)
    calls(proxy)
    with pytest.raises(
        TicketSystemError, match=r"did not change queue: .*Queue Nowhere does not exist"
    ):
        await rt.update(key, TicketChanges(queue="Nowhere"))
    assert calls(proxy) == ["PUT /ticket/:id", "GET /tickets"]


# -- what a healthy RT does not do ----------------------------------------------------------


def _collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"items": items, "page": 1, "per_page": 100, "count": len(items), "total": len(items)}


CREATE = {"id": "1", "ObjectId": "5", "Type": "Create", "Created": "2024-05-01T10:00:00Z"}


def _comment(txn: str) -> dict[str, Any]:
    return {"id": txn, "ObjectId": "5", "Type": "Comment", "Created": "2024-05-01T10:01:00Z"}


def _text(txn: str, body: str) -> dict[str, Any]:
    return {
        "id": f"a{txn}",
        "TransactionId": txn,
        "ContentType": "text/plain",
        "Content": body,
        "Subject": "s",
    }


async def test_without_a_location_the_new_comment_is_found_in_the_history() -> None:
    with HttpServer() as server:
        server.respond(
            "/REST/2.0/transactions",
            Reply(200, json=_collection([CREATE])),
            Reply(200, json=_collection([CREATE, _comment("9")])),
        )
        server.respond("/REST/2.0/attachments", Reply(200, json=_collection([_text("9", "hi")])))
        server.respond("/REST/2.0/ticket/5/comment", Reply(201, json=["Comments added"]))
        system = RequestTrackerTicketSystem(RequestTrackerParams(url=server.url, token="t"))
        try:
            added = await system.add_note("5", Note(subject="s", body="hi"))
        finally:
            await system.close()
        assert added.id == "9"
        assert len(server.hits("/REST/2.0/ticket/5/comment")) == 1


async def test_a_lost_answer_is_not_taken_for_an_identical_note_added_just_before() -> None:
    """The second of two identical notes is sent, its answer lost, and it did not land: the
    first is not mistaken for it (the adapter knows it added that one), so it is sent again."""
    with HttpServer() as server:
        server.respond(
            "/REST/2.0/transactions",
            Reply(200, json=_collection([CREATE])),  # the notes before: none
            Reply(200, json=_collection([CREATE, _comment("10")])),  # after the loss
        )
        server.respond("/REST/2.0/attachments", Reply(200, json=_collection([_text("10", "same")])))
        server.respond(
            "/REST/2.0/ticket/5/comment",
            Reply(201, json=["Comments added"], headers={"Location": "/REST/2.0/transaction/10"}),
            Reply(500, text="lost"),  # not saved, but the adapter cannot know
            Reply(201, json=["Comments added"], headers={"Location": "/REST/2.0/transaction/12"}),
        )
        params = RequestTrackerParams(url=server.url, token="t", retry_backoff=0.01)
        system = RequestTrackerTicketSystem(params)
        try:
            assert await system.notes("5") == []
            first = await system.add_note("5", Note(subject="s", body="same"))
            second = await system.add_note("5", Note(subject="s", body="same"))
        finally:
            await system.close()
        assert (first.id, second.id) == ("10", "12")
        assert len(server.hits("/REST/2.0/ticket/5/comment")) == 3


async def test_a_note_whose_answer_is_lost_every_time_is_sent_at_most_retries_plus_one() -> None:
    with HttpServer() as server:
        server.respond("/REST/2.0/transactions", Reply(200, json=_collection([CREATE])))
        server.respond("/REST/2.0/ticket/5/comment", Reply(500, text="lost"))
        params = RequestTrackerParams(url=server.url, token="t", retries=2, retry_backoff=0.01)
        system = RequestTrackerTicketSystem(params, id="rt")
        try:
            await system.notes("5")
            with pytest.raises(AnswerLostError, match=r"rt 'rt': POST /ticket/5/comment"):
                await system.add_note("5", Note(body="never lands"))
        finally:
            await system.close()
        assert len(server.hits("/REST/2.0/ticket/5/comment")) == 3
