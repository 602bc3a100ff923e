"""The embedded SQLite helpdesk passes the shared behaviour suite, on a real file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.tickets.behaviour import TicketSystemBehaviour

from open_ticket_ai.errors import TicketSystemError
from open_ticket_ai.tickets.adapters import sqlite as adapter
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Note, TicketChanges
from open_ticket_ai.tickets.system import TicketSystem


class TestSqliteTicketSystem(TicketSystemBehaviour):
    missing_id = "424242"

    @pytest.fixture
    async def system(self, tmp_path: Path) -> AsyncIterator[TicketSystem[Any]]:
        system = SqliteTicketSystem(SqliteParams(path=str(tmp_path / "helpdesk.sqlite")), id="db")
        await system.open()
        yield system
        await system.close()


async def test_tickets_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "helpdesk.sqlite")
    first = SqliteTicketSystem(SqliteParams(path=path))
    await first.open()
    created = await first.create(NewTicket(subject="kept", queue="Incoming"))
    await first.close()
    second = SqliteTicketSystem(SqliteParams(path=path))
    await second.open()
    try:
        assert (await second.get(created.id)).subject == "kept"
    finally:
        await second.close()


async def test_an_unusable_path_is_a_ticket_system_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    system = SqliteTicketSystem(
        SqliteParams(path=str(tmp_path / "file" / "db.sqlite"), create=True)
    )
    with pytest.raises(TicketSystemError, match="cannot open"):
        await system.open()


@contextmanager
def another_writer(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the file's write lock while inside."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


@asynccontextmanager
async def desk_with_a_ticket(path: Path) -> AsyncIterator[tuple[SqliteTicketSystem, str]]:
    desk = SqliteTicketSystem(SqliteParams(path=str(path)))
    await desk.open()
    try:
        ticket = await desk.create(NewTicket(subject="s", body="b", queue="Inbox"))
        yield desk, ticket.id
    finally:
        await desk.close()


async def test_a_file_another_process_writes_makes_a_call_wait_not_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "desk.sqlite"
    async with desk_with_a_ticket(path) as (desk, ticket_id):
        with another_writer(path) as other:
            update = asyncio.ensure_future(desk.update(ticket_id, TicketChanges(queue="Billing")))
            ticks = 0
            for _ in range(20):  # the loop goes on while the update waits
                await asyncio.sleep(0.01)
                ticks += 1
            assert not update.done()
            (queue,) = other.execute(
                "SELECT queue FROM tickets WHERE id = ?", (int(ticket_id),)
            ).fetchone()
            assert queue == "Inbox"
        assert (await update).queue == "Billing"
        assert ticks == 20
        await desk.add_note(ticket_id, Note(body="seen"))
        assert [n.body for n in await desk.notes(ticket_id)] == ["seen"]


async def test_a_file_held_too_long_fails_the_call_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "desk.sqlite"
    async with desk_with_a_ticket(path) as (desk, ticket_id):
        with (
            another_writer(path),
            pytest.raises(TicketSystemError, match=r"database is locked \(for 0.2 s\)"),
        ):
            await desk.update(ticket_id, TicketChanges(queue="Billing"))
        assert (await desk.get(ticket_id)).queue == "Inbox"  # nothing half-done
