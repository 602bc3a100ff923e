"""The ticket pipes take Open Ticket AI's parameter shapes (``ticket_search_criteria``,
``updated_ticket``, ``note``) and return its result key ``fetched_tickets`` as well as ours;
UpdateTicketPipe sets the subject too."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Priority, TicketSearch

STEPS = """
- id: fetch
  use: FetchTicketsPipe
  params:
    ticket_system: desk
    ticket_search_criteria: {queue: {name: Inbox}, limit: 1}
- id: note
  use: AddNotePipe
  params:
    ticket_system: desk
    ticket_id: "{{ get_pipe_result('fetch', 'fetched_tickets')[0]['id'] }}"
    note: {subject: Received, body: Your ticket is being processed.}
- id: move
  use: UpdateTicketPipe
  params:
    ticket_system: desk
    ticket_id: "{{ get_pipe_result('fetch', 'fetched_tickets')[0]['id'] }}"
    updated_ticket:
      subject: "[sorted] {{ get_pipe_result('fetch', 'fetched_tickets')[0]['subject'] }}"
      queue: {name: Billing}
      priority: {name: high}
      state: {name: open}
"""


def config(db: Path, steps: str = STEPS) -> str:
    return textwrap.dedent(
        f"""
        services:
          - {{id: desk, use: SqliteTicketSystem, params: {{path: "{db}"}}}}
        orchestrator:
          runners:
            - id: r
              run:
                id: all
                steps:
        """
    ) + textwrap.indent(textwrap.dedent(steps), " " * 20)


async def seed(db: Path) -> None:
    desk = SqliteTicketSystem(SqliteParams(path=str(db)))
    await desk.open()
    try:
        await desk.create(NewTicket(subject="Invoice twice", queue="Inbox"))
        await desk.create(NewTicket(subject="Second", queue="Inbox"))
    finally:
        await desk.close()


async def tickets(db: Path) -> list[object]:
    desk = SqliteTicketSystem(SqliteParams(path=str(db)))
    await desk.open()
    try:
        found = await desk.search(TicketSearch(limit=10))
        return [(t, await desk.notes(t.id)) for t in found]
    finally:
        await desk.close()


def test_upstream_shapes_fetch_note_and_update_one_ticket(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    asyncio.run(seed(db))
    result = asyncio.run(Orchestrator(build(parse_config(config(db), "c.yml"))).run_once("r"))
    assert result.succeeded, result.message
    state = {t.subject: (t, notes) for t, notes in asyncio.run(tickets(db))}  # type: ignore[attr-defined]
    moved, notes = state["[sorted] Invoice twice"]
    assert (moved.queue, moved.priority, moved.state) == ("Billing", Priority.HIGH, "open")
    assert [n.subject for n in notes] == ["Received"]
    assert notes[0].body.startswith("Your ticket is being processed.")
    untouched, none = state["Second"]
    assert untouched.queue == "Inbox"
    assert none == []
    # Run again: the note is there and the ticket moved; nothing is done twice.
    again = asyncio.run(Orchestrator(build(parse_config(config(db), "c.yml"))).run_once("r"))
    assert again.succeeded
    assert len(asyncio.run(tickets(db))) == 2


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            "{ticket_system: desk, ticket_search_criteria: {queue: {}}}",
            "give its name, {name: ...}, or the helpdesk's id, {id: ...}",
        ),
        (
            "{ticket_system: desk, ticket_id: '1', updated_ticket: {body: hi}}",
            "add text with AddNotePipe",
        ),
        ("{ticket_system: desk, ticket_id: '1'}", "body: is required (or give note:"),
    ],
    ids=["queue-without-name-or-id", "update-body", "note-without-body"],
)
def test_upstream_shapes_that_do_not_fit_say_why(tmp_path: Path, params: str, says: str) -> None:
    use = (
        "FetchTicketsPipe"
        if "criteria" in params
        else "UpdateTicketPipe"
        if "updated" in params
        else "AddNotePipe"
    )
    steps = f"- id: x\n  use: {use}\n  params: {params}\n"
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        build(parse_config(config(tmp_path / "d.sqlite", steps), "c.yml"))


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("medium", Priority.NORMAL),
        ("3 normal", Priority.NORMAL),  # Znuny's
        ("3 Mittel", Priority.NORMAL),  # Znuny's, in German
        ("2 normal", Priority.NORMAL),  # Zammad's: the name decides
        ("3 high", Priority.HIGH),  # Zammad's
        ("5 very high", Priority.VERY_HIGH),
        ("4 whatever", Priority.HIGH),  # an unknown name: the number, on Znuny's scale
        ("sehr hoch", Priority.VERY_HIGH),
    ],
)
def test_a_helpdesks_own_priority_names_are_read(name: str, level: Priority) -> None:
    assert Priority.parse(name) is level


def test_an_unreadable_priority_says_what_is_read() -> None:
    with pytest.raises(ValueError, match=r"unknown priority '9 x'.*led by its level"):
        Priority.parse("9 x")
