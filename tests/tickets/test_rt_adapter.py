"""The Request Tracker adapter against a real RT 5 (installed and started by the tests), plus
scripted HTTP servers for what a healthy RT never does (5xx, malformed answers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from tests.support.http_server import HttpServer, Reply, closed_port_url
from tests.tickets.behaviour import TicketSystemBehaviour
from tests.tickets.rt_server import (  # noqa: F401 (rt_server is a fixture)
    SETUP_SECONDS,
    RtServer,
    rt_server,
)

from open_ticket_ai.core.config.loader import parse_config
from open_ticket_ai.core.factory import build
from open_ticket_ai.errors import TicketNotFoundError, TicketSystemError
from open_ticket_ai.tickets.adapters.rt import (
    RequestTrackerParams,
    RequestTrackerTicketSystem,
    _page_size,
)
from open_ticket_ai.tickets.models import NewTicket, Note, Priority, TicketChanges, TicketSearch
from open_ticket_ai.tickets.system import TicketSystem


def params_for(server: RtServer, **extra: Any) -> RequestTrackerParams:
    return RequestTrackerParams(
        url=server.url, token=server.token, time_zone=server.time_zone, **extra
    )


@pytest.fixture
async def rt(rt_server: RtServer) -> AsyncIterator[RequestTrackerTicketSystem]:  # noqa: F811
    system = RequestTrackerTicketSystem(params_for(rt_server), id="rt")
    await system.open()
    yield system
    await system.close()


@pytest.fixture
async def raw(rt_server: RtServer) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """RT's REST2 itself, to look behind the adapter."""
    async with httpx.AsyncClient(
        base_url=f"{rt_server.url}/REST/2.0",
        headers={"Authorization": f"token {rt_server.token}"},
    ) as client:
        yield client


# Defined first so that it runs first: it pays for installing and starting RT.
@pytest.mark.timeout(SETUP_SECONDS)
async def test_the_rt_server_answers(raw: httpx.AsyncClient) -> None:
    answer = await raw.get("/rt")
    assert answer.status_code == 200
    assert answer.json()["Version"].startswith("5.")


class TestRequestTracker(TicketSystemBehaviour):
    # scripts/rt5-test-server.sh creates the free-form custom field otai_label for all queues.
    supports_custom_fields = True

    @pytest.fixture
    async def system(self, rt: RequestTrackerTicketSystem) -> TicketSystem[Any]:
        return rt


# -- priorities ------------------------------------------------------------------------------


async def test_priorities_are_sent_as_rt_numbers_and_read_back(
    rt: RequestTrackerTicketSystem, raw: httpx.AsyncClient
) -> None:
    for level, number in [(Priority.VERY_LOW, 10), (Priority.HIGH, 70), (Priority.VERY_HIGH, 90)]:
        ticket = await rt.create(NewTicket(subject=f"p{level}", queue="Incoming", priority=level))
        assert (await raw.get(f"/ticket/{ticket.id}")).json()["Priority"] == str(number)
        assert ticket.priority == level


async def test_rt_numbers_read_as_the_nearest_level(
    rt: RequestTrackerTicketSystem, raw: httpx.AsyncClient
) -> None:
    ticket = await rt.create(NewTicket(subject="set by hand", queue="Incoming"))
    for number, level in [(62, Priority.HIGH), (0, Priority.VERY_LOW), (100, Priority.VERY_HIGH)]:
        changed = await raw.put(f"/ticket/{ticket.id}", json={"Priority": number})
        assert changed.status_code == 200
        assert (await rt.get(ticket.id)).priority == level


async def test_a_priority_map_changes_the_numbers(
    rt_server: RtServer,  # noqa: F811
    raw: httpx.AsyncClient,
) -> None:
    system = RequestTrackerTicketSystem(params_for(rt_server, priority_map={"high": 80, 5: 99}))
    try:
        ticket = await system.create(NewTicket(subject="mapped", queue="Incoming", priority=4))
        assert (await raw.get(f"/ticket/{ticket.id}")).json()["Priority"] == "80"
        moved = await system.update(ticket.id, TicketChanges(priority=Priority.VERY_HIGH))
        assert (await raw.get(f"/ticket/{ticket.id}")).json()["Priority"] == "99"
        assert moved.priority == Priority.VERY_HIGH
    finally:
        await system.close()


def test_the_nearest_level_of_any_number() -> None:
    system = RequestTrackerTicketSystem(RequestTrackerParams(url="http://rt", token="t"))
    assert [system.level(n) for n in (-5, 19, 21, 40, 50, 79, 81, 1000)] == [1, 1, 2, 2, 3, 4, 5, 5]
    assert system.level("") is None
    assert system.level(None) is None


# -- search -----------------------------------------------------------------------------------


async def test_paging_with_offsets_that_are_not_a_multiple_of_the_limit(
    rt: RequestTrackerTicketSystem,
) -> None:
    for i in range(7):
        await rt.create(NewTicket(subject=f"paged {i}", queue="Paging"))
    everything = await rt.search(TicketSearch(queue="Paging", limit=500))
    ids = [t.id for t in everything]
    assert len(ids) == 7
    for offset, limit in [(3, 2), (1, 3), (5, 4), (2, 1), (0, 7), (6, 5), (7, 2), (4, 3)]:
        page = await rt.search(TicketSearch(queue="Paging", offset=offset, limit=limit))
        assert [t.id for t in page] == ids[offset : offset + limit], (offset, limit)


def test_page_size_covers_the_window_with_one_page_when_it_can() -> None:
    for offset in range(0, 260):
        for limit in range(1, 130):
            size = _page_size(offset, limit)
            assert 1 <= size <= 100
            if limit <= size:  # one page, starting at or before offset, holds the window
                assert offset // size == (offset + limit - 1) // size or size == 100
            if offset + limit <= 100:
                assert offset // size == (offset + limit - 1) // size


async def test_updated_since_is_exact_to_the_second_in_rts_time_zone(
    rt: RequestTrackerTicketSystem,
) -> None:
    # RT reads TicketSQL dates in its own zone (New York here): a wrong zone is hours off.
    ticket = await rt.create(NewTicket(subject="timed", queue="Incoming"))
    assert ticket.updated is not None

    async def found(since_delta: float) -> bool:
        since = ticket.updated + timedelta(seconds=since_delta)  # type: ignore[operator]
        hits = await rt.search(TicketSearch(queue="Incoming", updated_since=since, limit=500))
        return ticket.id in {t.id for t in hits}

    assert await found(-2)
    assert await found(0)
    assert not await found(2)


async def test_search_by_state(rt: RequestTrackerTicketSystem) -> None:
    ticket = await rt.create(NewTicket(subject="stalled one", queue="Billing"))
    await rt.update(ticket.id, TicketChanges(state="stalled"))
    stalled = await rt.search(TicketSearch(queue="Billing", state="stalled", limit=500))
    assert ticket.id in {t.id for t in stalled}
    assert {t.state for t in stalled} == {"stalled"}


async def test_a_state_map_translates_both_ways(
    rt_server: RtServer,  # noqa: F811
    raw: httpx.AsyncClient,
) -> None:
    system = RequestTrackerTicketSystem(params_for(rt_server, state_map={"closed": "resolved"}))
    try:
        ticket = await system.create(NewTicket(subject="to close", queue="Incoming"))
        closed = await system.update(ticket.id, TicketChanges(state="closed"))
        assert (await raw.get(f"/ticket/{ticket.id}")).json()["Status"] == "resolved"
        assert closed.state == "closed"
        found = await system.search(TicketSearch(queue="Incoming", state="closed", limit=500))
        assert ticket.id in {t.id for t in found}
    finally:
        await system.close()


async def test_search_results_carry_body_requester_and_fields(
    rt: RequestTrackerTicketSystem,
) -> None:
    ticket = await rt.create(
        NewTicket(
            subject="full",
            body="line one\nline two",
            queue="Billing",
            requester="grace@example.com",
            custom_fields={"otai_label": "refund"},
        )
    )
    [found] = [
        t for t in await rt.search(TicketSearch(queue="Billing", limit=500)) if t.id == ticket.id
    ]
    assert found == ticket
    assert found.body == "line one\nline two"
    assert found.requester == "grace@example.com"
    assert found.custom_fields == {"otai_label": "refund"}


async def test_quotes_in_a_queue_name_stay_inside_the_ticketsql_string(
    rt: RequestTrackerTicketSystem,
) -> None:
    assert await rt.search(TicketSearch(queue="O'Brien \\' OR Queue = 'Incoming")) == []


async def test_bodies_empty_or_html_only(
    rt: RequestTrackerTicketSystem, raw: httpx.AsyncClient
) -> None:
    empty = await rt.create(NewTicket(subject="subject only", queue="Incoming"))
    assert empty.body == ""
    answer = await raw.post(
        "/ticket",
        json={
            "Queue": "Incoming",
            "Subject": "html",
            "Content": "<p>hi</p>",
            "ContentType": "text/html",
        },
    )
    assert (await rt.get(answer.json()["id"])).body == "<p>hi</p>"


# -- what RT refuses --------------------------------------------------------------------------


async def test_an_update_rt_does_not_apply_raises_with_rts_message(
    rt: RequestTrackerTicketSystem,
) -> None:
    ticket = await rt.create(NewTicket(subject="stays", queue="Incoming"))
    with pytest.raises(TicketSystemError, match="Queue Nowhere does not exist") as caught:
        await rt.update(ticket.id, TicketChanges(queue="Nowhere"))
    assert "PUT /ticket/" in str(caught.value)
    with pytest.raises(TicketSystemError, match="isn't a valid status"):
        await rt.update(ticket.id, TicketChanges(state="bogus"))
    with pytest.raises(TicketSystemError, match="custom field 'no_such_field'"):
        await rt.update(ticket.id, TicketChanges(custom_fields={"no_such_field": "x"}))
    assert (await rt.get(ticket.id)).queue == "Incoming"


async def test_creating_in_an_unknown_queue_names_rts_reason(
    rt: RequestTrackerTicketSystem,
) -> None:
    with pytest.raises(TicketSystemError, match=r"POST /ticket answered 403.*Nowhere"):
        await rt.create(NewTicket(subject="lost", queue="Nowhere"))


async def test_ids_that_are_not_numbers_are_not_found(rt: RequestTrackerTicketSystem) -> None:
    with pytest.raises(TicketNotFoundError):
        await rt.get("1 OR id > 0")
    with pytest.raises(TicketNotFoundError):
        await rt.notes("999999")


async def test_notes_keep_subject_order_and_time(rt: RequestTrackerTicketSystem) -> None:
    ticket = await rt.create(NewTicket(subject="noted", body="the body", queue="Incoming"))
    first = await rt.add_note(ticket.id, Note(body="first", subject="otai: triage"))
    second = await rt.add_note(ticket.id, Note(body="second"))
    notes = await rt.notes(ticket.id)
    assert [(n.id, n.subject, n.body) for n in notes] == [
        (first.id, "otai: triage", "first"),
        (second.id, "open-ticket-ai", "second"),
    ]
    assert all(n.created is not None and n.created.tzinfo is not None for n in notes)
    assert (await rt.get(ticket.id)).body == "the body"  # notes are not the body


# -- credentials and connections --------------------------------------------------------------


async def test_a_wrong_token_is_a_clear_401(rt_server: RtServer) -> None:  # noqa: F811
    system = RequestTrackerTicketSystem(
        RequestTrackerParams(url=rt_server.url, token="1-14-0123456789abcdef"), id="helpdesk"
    )
    try:
        with pytest.raises(TicketSystemError) as caught:
            await system.search(TicketSearch())
    finally:
        await system.close()
    assert caught.value.status == 401
    message = str(caught.value)
    assert "rt 'helpdesk': GET /tickets answered 401" in message
    assert "Unauthorized" in message
    assert "0123456789abcdef" not in message


async def test_basic_auth_works_too(rt_server: RtServer) -> None:  # noqa: F811
    params = RequestTrackerParams(
        url=rt_server.url,
        username=rt_server.username,
        password=rt_server.password,
        time_zone=rt_server.time_zone,
    )
    system = RequestTrackerTicketSystem(params)
    try:
        created = await system.create(NewTicket(subject="basic", queue="Incoming"))
        assert (await system.get(created.id)).subject == "basic"
    finally:
        await system.close()


async def test_an_rt_that_is_down_fails_after_the_retries() -> None:
    params = RequestTrackerParams(
        url=closed_port_url(), token="t", retries=2, retry_backoff=0.01, timeout=2
    )
    system = RequestTrackerTicketSystem(params, id="down")
    try:
        with pytest.raises(TicketSystemError, match=r"rt 'down': GET /tickets failed after 3"):
            await system.get("1")
    finally:
        await system.close()


def _collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"items": items, "page": 1, "per_page": 100, "count": len(items), "total": len(items)}


async def test_a_5xx_is_retried() -> None:
    with HttpServer() as server:
        server.respond(
            "/REST/2.0/tickets", Reply(503, text="busy"), Reply(200, json=_collection([]))
        )
        system = RequestTrackerTicketSystem(
            RequestTrackerParams(url=server.url, token="secret-token", retry_backoff=0.01)
        )
        try:
            assert await system.search(TicketSearch(queue="Incoming", offset=3, limit=2)) == []
        finally:
            await system.close()
        _, second = server.hits("/REST/2.0/tickets")
    assert second.headers["authorization"] == "token secret-token"
    assert second.query["query"] == ["Queue = 'Incoming'"]
    assert second.query["fields[Queue]"] == ["Name"]
    assert second.query["orderby"] == ["LastUpdated", "id"]
    assert (second.query["page"], second.query["per_page"]) == (["2"], ["3"])


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200, json={"message": "odd"}), "not a collection with items"),
        (Reply(200, text="<html>maintenance</html>"), "not JSON"),
        (Reply(200, json=_collection([{"Subject": "no id"}])), "not a collection with items"),
        (Reply(200, json=_collection([{"id": "7", "Created": "yesterday"}])), "cannot read"),
    ],
)
async def test_a_malformed_answer_is_a_ticket_system_error(reply: Reply, expected: str) -> None:
    with HttpServer() as server:
        server.respond("/REST/2.0/tickets", reply)
        server.respond("/REST/2.0/transactions", Reply(200, json=_collection([])))
        system = RequestTrackerTicketSystem(RequestTrackerParams(url=server.url, token="t"))
        try:
            with pytest.raises(TicketSystemError, match=expected):
                await system.search(TicketSearch())
        finally:
            await system.close()


# -- params and config ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({}, "give a token, or a username and a password"),
        ({"token": "t", "username": "u", "password": "p"}, "not both"),
        ({"token": "  "}, "token is empty"),
        ({"username": "u"}, "give a token, or a username and a password"),
        ({"token": "t", "time_zone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_params_say_what_is_wrong(given: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        RequestTrackerParams(url="http://rt", **given)


def test_credentials_stay_out_of_describe_and_repr() -> None:
    params = RequestTrackerParams(url="http://rt.example", token="s3cret")
    system = RequestTrackerTicketSystem(params, id="rt")
    assert system.describe() == {
        "id": "rt",
        "kind": "RequestTrackerTicketSystem",
        "url": "http://rt.example",
    }
    assert "s3cret" not in repr(params)
    basic = RequestTrackerParams(url="http://rt.example", username="u", password="pw-s3cret")
    assert "pw-s3cret" not in repr(basic)


def test_a_config_names_it_and_takes_the_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTAI_RT_TOKEN", "1-14-from-env")
    config = parse_config(
        """
open_ticket_ai:
  services:
    - id: helpdesk
      use: "open_ticket_ai.tickets.adapters.rt:RequestTrackerTicketSystem"
      params:
        url: "https://rt.example.com"
        token: "{{ env.OTAI_RT_TOKEN }}"
        priority_map: {high: 80}
  orchestrator:
    runners: []
"""
    )
    system = build(config).services["helpdesk"]
    assert isinstance(system, RequestTrackerTicketSystem)
    assert system.params.token is not None
    assert system.params.token.get_secret_value() == "1-14-from-env"
    assert system.priorities[Priority.HIGH] == 80
    assert system.priorities[Priority.NORMAL] == 50
