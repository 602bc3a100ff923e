"""ZammadTicketSystem against a fake Zammad REST API on 127.0.0.1 (tests/tickets/fake_zammad)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.tickets.behaviour import TicketSystemBehaviour
from tests.tickets.fake_zammad import FakeZammad

from open_ticket_ai import build, parse_config
from open_ticket_ai.errors import TicketNotFoundError, TicketSystemError
from open_ticket_ai.tickets.adapters.zammad import (
    UpstreamZammadParams,
    ZammadParams,
    ZammadTicketSystem,
    ZammadTicketSystemService,
    priority_of,
)
from open_ticket_ai.tickets.models import NewTicket, Note, Priority, TicketChanges, TicketSearch
from open_ticket_ai.tickets.system import TicketSystem

TOKEN = "zammad-test-token"
FIVE_PRIORITIES = ("1 very low", "2 low", "3 normal", "4 high", "5 very high")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@asynccontextmanager
async def opened(fake: FakeZammad, **extra: Any) -> AsyncIterator[ZammadTicketSystem]:
    values = {
        "url": fake.url,
        "token": TOKEN,
        "default_customer": "customer@example.com",
        "retry_backoff": 0.01,
        **extra,
    }
    system = ZammadTicketSystem(ZammadParams.model_validate(values), id="zammad")
    await system.open()
    try:
        yield system
    finally:
        await system.close()


@pytest.fixture
def fake() -> Iterator[FakeZammad]:
    with FakeZammad() as running:
        yield running


class TestZammadTicketSystem(TicketSystemBehaviour):
    """The shared suite round-trips all five levels, so this Zammad has five priorities
    (Zammad starts with three; the default mapping is tested below)."""

    @pytest.fixture
    async def system(self) -> AsyncIterator[TicketSystem[Any]]:
        with FakeZammad(priorities=FIVE_PRIORITIES) as fake:
            mapping = dict(zip(Priority, FIVE_PRIORITIES, strict=True))
            async with opened(fake, priority_map=mapping) as system:
                yield system


class TestZammadWithOpenTicketAIsParams(TicketSystemBehaviour):
    """Open Ticket AI's ``zammad:ZammadTicketSystemService`` params (base_url, access_token,
    verify) reach the same Zammad."""

    @pytest.fixture
    async def system(self) -> AsyncIterator[TicketSystem[Any]]:
        with FakeZammad(priorities=FIVE_PRIORITIES) as fake:
            params = UpstreamZammadParams.model_validate(
                {
                    "base_url": fake.url,
                    "access_token": TOKEN,
                    "verify": False,
                    "priority_map": dict(zip(Priority, FIVE_PRIORITIES, strict=True)),
                    "default_customer": "customer@example.com",
                    "retry_backoff": 0.01,
                }
            )
            system = ZammadTicketSystemService(params, id="zammad")
            await system.open()
            try:
                yield system
            finally:
                await system.close()
            assert {seen.headers["authorization"] for seen in fake.seen} == {f"Token token={TOKEN}"}


# -- the wire -------------------------------------------------------------------------------


async def test_calls_carry_the_token_and_search_by_query(fake: FakeZammad) -> None:
    async with opened(fake, url=f"{fake.url}/api/v1/") as system:
        await system.create(NewTicket(subject="Printer", body="jammed", queue="Billing"))
        since = datetime(2024, 1, 15, 12, 0, 30, 999_999, tzinfo=UTC)
        found = await system.search(TicketSearch(queue="Billing", state="new", updated_since=since))
    assert [t.subject for t in found] == ["Printer"]
    assert {seen.headers["authorization"] for seen in fake.seen} == {f"Token token={TOKEN}"}
    search = next(seen for seen in fake.seen if seen.path == "/api/v1/tickets/search")
    assert search.query["query"] == (
        'group.name:"Billing" AND state.name:"new" AND updated_at:["2024-01-15T12:00:30.999Z" TO *]'
    )
    assert search.query["sort_by"] == ["updated_at", "id"]
    assert search.query["expand"] == "true"


async def test_the_body_is_the_first_article_and_notes_are_internal_ones(
    fake: FakeZammad,
) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Invoice", body="twice", queue="Billing"))
        assert await system.notes(ticket.id) == []  # the first article is not internal
        note = await system.add_note(ticket.id, Note(body="classified as billing"))
        assert note.created is not None
        assert [n.body for n in await system.notes(ticket.id)] == ["classified as billing"]
        assert (await system.get(ticket.id)).body == "twice"
    posted = next(seen for seen in fake.seen if seen.path == "/api/v1/ticket_articles")
    assert posted.body["type"] == "note"
    assert posted.body["internal"] is True
    assert posted.body["ticket_id"] == int(ticket.id)


async def test_a_requester_becomes_the_customer(fake: FakeZammad) -> None:
    async with opened(fake, default_customer=None) as system:
        with pytest.raises(TicketSystemError, match="default_customer"):
            await system.create(NewTicket(subject="Anonymous", queue="Users"))
        ticket = await system.create(NewTicket(subject="Ada", queue="Users", requester="a@b.c"))
    assert ticket.requester == "a@b.c"
    created = next(seen for seen in fake.seen if seen.method == "POST")
    assert created.body["customer_id"] == "guess:a@b.c"


# -- errors ---------------------------------------------------------------------------------


async def test_zammads_error_is_in_the_message(fake: FakeZammad) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Moved", queue="Users"))
        with pytest.raises(TicketSystemError) as caught:
            await system.update(ticket.id, TicketChanges(queue="Nowhere"))
    assert not isinstance(caught.value, TicketNotFoundError)
    assert caught.value.status == 422
    assert "zammad 'zammad': PUT /tickets/1 answered 422" in str(caught.value)
    assert "No lookup value found for 'group'" in str(caught.value)


async def test_an_unknown_ticket_is_not_found(fake: FakeZammad) -> None:
    async with opened(fake) as system:
        with pytest.raises(TicketNotFoundError, match="no ticket '42'"):
            await system.get("42")
        with pytest.raises(TicketNotFoundError, match="no ticket '42'"):
            await system.update("42", TicketChanges(state="open"))
        with pytest.raises(TicketNotFoundError, match="no ticket '42'"):
            await system.notes("42")
        with pytest.raises(TicketNotFoundError, match="ids are numbers"):
            await system.get("../users")
    assert "/api/v1/users" not in {seen.path for seen in fake.seen}


async def test_a_refused_token_is_a_clear_401(fake: FakeZammad) -> None:
    fake.token = "rotated"
    async with opened(fake) as system:
        with pytest.raises(TicketSystemError) as caught:
            await system.get("1")
    assert caught.value.status == 401
    assert "answered 401" in str(caught.value)
    assert "the API token was refused" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_5xx_answers_are_retried_until_one_succeeds(fake: FakeZammad) -> None:
    async with opened(fake, retries=2) as system:
        ticket = await system.create(NewTicket(subject="Flaky", queue="Users"))
        fake.fail_next(2)
        before = len(fake.seen)
        assert (await system.get(ticket.id)).subject == "Flaky"
        assert len(fake.seen) - before == 4  # 2 failures, the ticket, its articles
        fake.fail_next(3)
        with pytest.raises(TicketSystemError, match="answered 502 after 3 attempts"):
            await system.get(ticket.id)


async def test_an_attribute_zammad_lacks_is_named(fake: FakeZammad) -> None:
    async with opened(fake) as system:
        ticket = await system.create(NewTicket(subject="Fields", queue="Users"))
        with pytest.raises(TicketSystemError, match="PUT /tickets/1: no ticket attribute 'nope'"):
            await system.update(ticket.id, TicketChanges(custom_fields={"nope": 1}))
        with pytest.raises(TicketSystemError, match=r"made ticket 2\): no ticket attribute 'x'"):
            await system.create(NewTicket(subject="F", queue="Users", custom_fields={"x": 1}))
        kept = await system.create(
            NewTicket(subject="G", queue="Users", custom_fields={"otai_label": "billing"})
        )
        assert kept.custom_fields == {"otai_label": "billing"}


def test_the_token_stays_out_of_descriptions(fake: FakeZammad) -> None:
    system = ZammadTicketSystem(ZammadParams.model_validate({"url": fake.url, "token": TOKEN}))
    assert TOKEN not in repr(system.params)
    assert TOKEN not in str(system.describe())


# -- priorities and paging ------------------------------------------------------------------


async def test_the_default_priorities_map_both_ways(fake: FakeZammad) -> None:
    async with opened(fake) as system:
        for level, stored, read in [
            (Priority.VERY_LOW, "1 low", Priority.LOW),
            (Priority.LOW, "1 low", Priority.LOW),
            (Priority.NORMAL, "2 normal", Priority.NORMAL),
            (Priority.HIGH, "3 high", Priority.HIGH),
            (Priority.VERY_HIGH, "3 high", Priority.HIGH),
        ]:
            ticket = await system.create(NewTicket(subject="p", queue="Users", priority=level))
            assert ticket.priority == read
            assert fake.tickets[int(ticket.id)]["priority_id"] == fake.priorities.index(stored) + 1


def test_priority_names_read_back_as_the_nearest_level() -> None:
    three = {Priority.NORMAL: "2 normal", Priority.HIGH: "3 high", Priority.VERY_HIGH: "3 high"}
    assert priority_of("3 high", three) == Priority.HIGH
    assert priority_of("2 normal", three) == Priority.NORMAL
    assert priority_of("Emergency", {Priority.HIGH: "x", Priority.VERY_HIGH: "Emergency"}) == 5
    assert priority_of("Emergency", three) is None


async def test_offset_and_limit_are_exact_across_pages_of_200(fake: FakeZammad) -> None:
    ids = [fake.add_ticket(f"bulk {i}", "Incoming") for i in range(205)]
    async with opened(fake) as system:
        for offset, limit in [(0, 2), (4, 2), (3, 2), (199, 3), (198, 7), (204, 5), (205, 5)]:
            window = await system.search(TicketSearch(queue="Incoming", offset=offset, limit=limit))
            assert [int(t.id) for t in window] == ids[offset : offset + limit], (offset, limit)
    pages = [
        (seen.query["page"], seen.query["per_page"])
        for seen in fake.seen
        if seen.path == "/api/v1/tickets/search"
    ]
    assert pages[:3] == [("1", "2"), ("3", "2"), ("1", "5")]
    assert pages[3:5] == [("1", "200"), ("2", "200")]


def test_a_config_builds_it_with_the_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTAI_ZAMMAD_TOKEN", "from-env")
    config = parse_config(
        """
open_ticket_ai:
  services:
    - id: helpdesk
      use: "open_ticket_ai.tickets.adapters.zammad:ZammadTicketSystem"
      params:
        url: "https://zammad.example"
        token: "{{ env.OTAI_ZAMMAD_TOKEN }}"
        priority_map: {very high: "4 urgent"}
  orchestrator:
    runners: []
"""
    )
    system = build(config).services["helpdesk"]
    assert isinstance(system, ZammadTicketSystem)
    assert system.params.token.get_secret_value() == "from-env"
    assert system.priorities[Priority.VERY_HIGH] == "4 urgent"
    assert system.priorities[Priority.HIGH] == "3 high"
    assert system.describe()["url"] == "https://zammad.example/api/v1"
