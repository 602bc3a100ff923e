"""Queues, states and priorities given by the helpdesk's own id (Open Ticket AI's
``{id: ...}``): searched and set by id where the adapter takes ids (Znuny/OTOBO, Zammad),
refused with the fix where it does not (the embedded helpdesk, which names them only)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.tickets.fake_zammad import FakeZammad
from tests.tickets.fake_znuny import FakeZnuny

from open_ticket_ai import build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.adapters.zammad import ZammadParams, ZammadTicketSystem
from open_ticket_ai.tickets.adapters.znuny import ZnunyParams, ZnunyTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Priority, TicketChanges, TicketSearch


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def znuny() -> Iterator[FakeZnuny]:
    with FakeZnuny() as running:
        yield running


def znuny_params(fake: FakeZnuny) -> dict[str, Any]:
    return {
        "url": fake.url,
        "username": "otai",
        "password": "s3cret",
        "default_customer_user": "customer@example.com",
        "retry_backoff": 0.01,
    }


async def test_znuny_searches_and_updates_by_id(znuny: FakeZnuny) -> None:
    system = ZnunyTicketSystem(ZnunyParams.model_validate(znuny_params(znuny)), id="z")
    await system.open()
    try:
        raw = await system.create(NewTicket(subject="a", body="b", queue="Raw"))
        await system.create(NewTicket(subject="c", body="d", queue="Billing"))
        # The fake's ids are positions: Raw 1, Incoming 2, Billing 3; open is state 2.
        found = await system.search(TicketSearch(queue_id="1"))
        assert [t.id for t in found] == [raw.id]
        search = next(s for s in reversed(znuny.seen) if s.operation == "TicketSearch")
        assert search.data["QueueIDs"] == "1"
        moved = await system.update(
            raw.id, TicketChanges(queue_id="3", state_id="2", priority_id="5")
        )
        assert (moved.queue, moved.state, moved.priority) == ("Billing", "open", Priority.VERY_HIGH)
        update = next(s for s in reversed(znuny.seen) if s.operation == "TicketUpdate")
        assert update.data["Ticket"] == {"QueueID": "3", "StateID": "2", "PriorityID": "5"}
        assert [t.id for t in await system.search(TicketSearch(state_id="2"))] == [raw.id]
    finally:
        await system.close()


async def test_zammad_searches_and_updates_by_id() -> None:
    with FakeZammad() as fake:
        system = ZammadTicketSystem(
            ZammadParams(url=fake.url, token=fake.token, retry_backoff=0.01), id="zm"
        )
        await system.open()
        try:
            first = await system.create(
                NewTicket(subject="a", body="b", queue="Users", requester="c@example.com")
            )
            moved = await system.update(first.id, TicketChanges(queue_id="2", priority_id="3"))
            assert moved.queue == fake.groups[1]
            assert moved.priority == Priority.HIGH
            put = next(s for s in reversed(fake.seen) if s.method == "PUT")
            assert put.body == {"group_id": 2, "priority_id": 3}
            found = await system.search(TicketSearch(queue_id="2"))
            assert [t.id for t in found] == [first.id]
            query = next(s for s in reversed(fake.seen) if s.path.endswith("/tickets/search"))
            assert query.query["query"] == 'group_id:"2"'
        finally:
            await system.close()


ROUTE = """
- id: fetch
  use: FetchTicketsPipe
  params:
    ticket_system: desk
    ticket_search_criteria: {queue: {id: 1}, limit: 5}
- id: move
  use: UpdateTicketPipe
  params:
    ticket_system: desk
    ticket_id: "{{ get_pipe_result('fetch', 'fetched_tickets')[0]['id'] }}"
    updated_ticket: {queue: {id: 3}, state: {name: open}, priority: {id: 4}}
"""


def config(service: str, steps: str = ROUTE) -> str:
    return textwrap.dedent(
        f"""
        services:
          - {service}
        orchestrator:
          ledger: false
          runners:
            - id: r
              run:
                id: all
                steps:
        """
    ) + textwrap.indent(textwrap.dedent(steps), " " * 20)


async def run_once(text: str) -> Any:
    orchestrator = Orchestrator(build(parse_config(text, "c.yml")))
    try:
        return await orchestrator.run_once("r")
    finally:
        orchestrator.close()


async def test_the_upstream_id_shapes_route_a_ticket_on_znuny(znuny: FakeZnuny) -> None:
    p = znuny_params(znuny)
    service = (
        f"{{id: desk, use: ZnunyTicketSystem, params: {{url: '{p['url']}', username: otai, "
        "password: s3cret, default_customer_user: c@example.com}}"
    )
    system = ZnunyTicketSystem(ZnunyParams.model_validate(p))
    await system.open()
    try:
        ticket = await system.create(NewTicket(subject="s", body="b", queue="Raw"))
        result = await run_once(config(service))
        assert result.succeeded, result.message
        now = await system.get(ticket.id)
    finally:
        await system.close()
    assert (now.queue, now.state, now.priority) == ("Billing", "open", Priority.HIGH)


async def test_the_embedded_helpdesk_refuses_ids_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    desk = SqliteTicketSystem(SqliteParams(path=str(db)))
    await desk.open()
    await desk.create(NewTicket(subject="s", body="b", queue="Inbox"))
    await desk.close()
    result = await run_once(
        config(f'{{id: desk, use: SqliteTicketSystem, params: {{path: "{db}"}}}}')
    )
    assert result.failed
    assert "takes queue by name only, not by id (queue '1')" in result.message
    assert "give {name: ...} instead of {id: ...}" in result.message
    assert "c.yml:" in result.message  # where: the step's place in the config
