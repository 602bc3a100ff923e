"""Ticket pipes on the embedded helpdesk: fetch, update, note, per-item iteration, and that
running the same pipeline twice changes nothing the second time."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Priority, TicketSearch


def config(db: Path, steps: str) -> str:
    return textwrap.dedent(
        f"""
        open_ticket_ai:
          services:
            - id: helpdesk
              use: SqliteTicketSystem
              params: {{path: "{db}"}}
          orchestrator:
            runners:
              - id: route
                run:
                  id: pipeline
                  steps:
        """
    ) + textwrap.indent(textwrap.dedent(steps), " " * 20)


ROUTING = """
- id: fetch
  use: FetchTicketsPipe
  params: {ticket_system: helpdesk, queue: Incoming, limit: 100}
- id: each
  for_each: "{{ pipe_result('fetch') }}"
  steps:
    - id: move
      use: UpdateTicketPipe
      params:
        ticket_system: helpdesk
        ticket_id: "{{ item.id }}"
        queue: "{{ 'Billing' if 'invoice' in item.subject else 'IT Support' }}"
        priority: high
    - id: note
      use: AddNotePipe
      params:
        ticket_system: helpdesk
        ticket_id: "{{ item.id }}"
        marker: routing
        body: "Moved to {{ pipe_result('move')['queue'] }} by open-ticket-ai."
"""


async def seed(db: Path, *subjects: str) -> list[str]:
    system = SqliteTicketSystem(SqliteParams(path=str(db)))
    await system.open()
    try:
        return [
            (await system.create(NewTicket(subject=s, body="text", queue="Incoming"))).id
            for s in subjects
        ]
    finally:
        await system.close()


async def run(text: str, runner: str = "route") -> object:
    return await Orchestrator(build(parse_config(text))).run_once(runner)


async def tickets(db: Path) -> dict[str, tuple[str | None, Priority | None, list[str]]]:
    """Every ticket's queue, priority and note bodies."""
    system = SqliteTicketSystem(SqliteParams(path=str(db)))
    await system.open()
    try:
        found = {}
        for queue in ("Incoming", "Billing", "IT Support"):
            for ticket in await system.search(TicketSearch(queue=queue, limit=1000)):
                notes = [n.body for n in await system.notes(ticket.id)]
                found[ticket.id] = (ticket.queue, ticket.priority, notes)
        return found
    finally:
        await system.close()


async def test_routing_moves_each_ticket_and_notes_it_once(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.sqlite"
    ids = await seed(db, "invoice is wrong", "vpn down", "second invoice")
    result = await run(config(db, ROUTING))
    assert result.succeeded, result.message  # type: ignore[attr-defined]
    state = await tickets(db)
    assert state[ids[0]][0] == "Billing"
    assert state[ids[1]][0] == "IT Support"
    assert state[ids[2]][0] == "Billing"
    assert all(state[i][1] == Priority.HIGH for i in ids)
    for i in ids:
        (note,) = state[i][2]
        assert note.startswith("Moved to ")
        assert note.endswith("[otai:routing]")


async def test_a_second_run_applies_nothing_twice(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.sqlite"
    ids = await seed(db, "invoice", "printer")
    first = await run(config(db, ROUTING))
    assert first.succeeded  # type: ignore[attr-defined]
    # The same tickets again (as if the first run had died before they left the queue):
    again = ROUTING.replace("queue: Incoming, limit: 100", "limit: 100")
    second = await run(config(db, again))
    assert second.succeeded  # type: ignore[attr-defined]
    state = await tickets(db)
    for i in ids:
        assert len(state[i][2]) == 1


async def test_update_is_skipped_when_nothing_differs(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.sqlite"
    (ticket_id,) = await seed(db, "already sorted")
    steps = f"""
    - id: same
      use: UpdateTicketPipe
      params: {{ticket_system: helpdesk, ticket_id: "{ticket_id}", queue: Incoming}}
    """
    orchestrator = Orchestrator(build(parse_config(config(db, steps))))
    result = await orchestrator.run_once("route")
    assert result.succeeded


async def test_one_failing_item_does_not_stop_the_others(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.sqlite"
    await seed(db, "a", "b", "c")
    steps = """
    - id: fetch
      use: FetchTicketsPipe
      params: {ticket_system: helpdesk, queue: Incoming}
    - id: each
      for_each: "{{ pipe_result('fetch') + [{'id': '777', 'subject': 'ghost'}] }}"
      use: UpdateTicketPipe
      params: {ticket_system: helpdesk, ticket_id: "{{ item.id }}", state: open}
    """
    result = await run(config(db, steps))
    assert result.failed  # type: ignore[attr-defined]
    assert "1 of 4 items failed; item 3" in result.message  # type: ignore[attr-defined]
    assert "777" in result.message  # type: ignore[attr-defined]
    state = await tickets(db)
    assert len(state) == 3


def test_an_unknown_ticket_system_is_a_config_error(tmp_path: Path) -> None:
    steps = """
    - id: fetch
      use: FetchTicketsPipe
      params: {ticket_system: helpdsk}
    """
    with pytest.raises(ConfigError, match=r"params\.ticket_system: no service 'helpdsk'"):
        build(parse_config(config(tmp_path / "x.sqlite", steps)))


def test_for_each_over_a_literal_list_runs_per_item() -> None:
    text = """
    runners:
      - id: r
        run:
          id: each
          for_each: [1, 2, 3]
          use: ExpressionPipe
          params: {expression: "{{ item * 10 }}-{{ loop.index }}"}
    """
    result = asyncio.run(Orchestrator(build(parse_config(textwrap.dedent(text)))).run_once("r"))
    assert result.succeeded
    assert [o["data"]["value"] for o in result.data["items"]] == ["10-0", "20-1", "30-2"]
    assert result.data["count"] == 3


def test_for_each_that_is_not_a_list_fails_with_its_path() -> None:
    text = """
    runners:
      - id: r
        run:
          id: each
          for_each: "{{ 'a string' }}"
          use: ExpressionPipe
          params: {expression: 1}
    """
    result = asyncio.run(Orchestrator(build(parse_config(textwrap.dedent(text)))).run_once("r"))
    assert result.failed
    assert "for_each: must give a list, got str" in result.message


async def test_create_ticket_from_fields_and_from_a_whole_ticket(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.sqlite"
    steps = """
    - id: one
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, subject: Fields, queue: Incoming, priority: low}
    - id: two
      use: CreateTicketPipe
      params:
        ticket_system: helpdesk
        ticket: "{{ {'subject': 'Whole', 'queue': 'Billing', 'body': 'b'} }}"
    - id: three
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, body: "no subject"}
    """
    result = await run(config(db, steps))
    assert result.failed  # type: ignore[attr-defined]
    assert "step 'three' failed: give 'ticket', or 'subject' and 'queue'" in result.message  # type: ignore[attr-defined]
    state = await tickets(db)
    assert sorted((q, p) for q, p, _ in state.values()) == [
        ("Billing", Priority.NORMAL),
        ("Incoming", Priority.LOW),
    ]


async def test_a_created_ticket_carries_its_idempotency_key(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.sqlite"
    steps = """
    - id: default
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, subject: Same, body: text, queue: Incoming}
    - id: again
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, subject: Same, body: text, queue: Incoming}
    - id: other
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, subject: Other, queue: Incoming}
    - id: named
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, subject: Named, queue: Incoming, idempotency_key: mail-42}
    """
    orch = Orchestrator(build(parse_config(config(db, steps))))
    ended: list[object] = []
    orch.bus.subscribe(ended.append, name="test")
    result = await orch.run_once("route")
    assert result.succeeded
    [run] = [e for e in ended if getattr(e, "results", None)]
    keys = {step: run.results[step].data["key"] for step in ("default", "again", "other", "named")}  # type: ignore[attr-defined]
    assert keys["default"] == keys["again"] != keys["other"]
    assert keys["default"].startswith("ticket-")
    assert keys["named"] == "mail-42"
    bodies = {
        ticket.subject: ticket.body
        for ticket in await _search(db, TicketSearch(queue="Incoming", limit=10))
    }
    assert bodies["Named"] == "[otai:mail-42]"
    assert bodies["Same"] == f"text\n\n[otai:{keys['default']}]"


async def _search(db: Path, criteria: TicketSearch) -> list[object]:
    system = SqliteTicketSystem(SqliteParams(path=str(db)))
    await system.open()
    try:
        return list(await system.search(criteria))
    finally:
        await system.close()


def test_an_idempotency_key_with_spaces_is_refused_at_load(tmp_path: Path) -> None:
    steps = """
    - id: bad
      use: CreateTicketPipe
      params: {ticket_system: helpdesk, subject: S, queue: Q, idempotency_key: "has space"}
    """
    with pytest.raises(ConfigError, match="idempotency_key"):
        build(parse_config(config(tmp_path / "h.sqlite", steps)))
