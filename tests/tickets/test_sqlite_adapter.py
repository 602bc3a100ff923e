"""The embedded SQLite helpdesk passes the shared behaviour suite, on a real file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.tickets.behaviour import TicketSystemBehaviour

from open_ticket_ai.errors import TicketSystemError
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket
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
