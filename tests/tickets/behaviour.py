"""The behaviour every TicketSystem adapter passes.

Subclass :class:`TicketSystemBehaviour` in an adapter's test module and provide the
``system`` fixture (an opened adapter) and ``queues`` (two queue names that exist there)::

    class TestMyAdapter(TicketSystemBehaviour):
        @pytest.fixture
        async def system(self) -> AsyncIterator[TicketSystem]: ...
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from open_ticket_ai.errors import TicketNotFoundError
from open_ticket_ai.tickets.models import NewTicket, Note, Priority, TicketChanges, TicketSearch
from open_ticket_ai.tickets.system import TicketSystem


class TicketSystemBehaviour:
    supports_custom_fields: ClassVar[bool] = True
    missing_id: ClassVar[str] = "999999"

    @pytest.fixture
    def queues(self) -> tuple[str, str]:
        return ("Incoming", "Billing")

    async def new(self, system: TicketSystem[Any], queue: str, subject: str, **extra: Any) -> Any:
        return await system.create(
            NewTicket(subject=subject, body=f"body of {subject}", queue=queue, **extra)
        )

    async def test_create_then_get_round_trips(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        created = await self.new(
            system,
            queues[0],
            "Printer on fire",
            priority=Priority.HIGH,
            requester="ada@example.com",
        )
        fetched = await system.get(created.id)
        assert fetched.id == created.id
        assert fetched.subject == "Printer on fire"
        assert "body of Printer on fire" in fetched.body
        assert fetched.queue == queues[0]
        assert fetched.priority == Priority.HIGH
        assert fetched.requester == "ada@example.com"
        assert fetched.created is not None
        assert fetched.created.tzinfo is not None

    async def test_get_unknown_ticket_raises_not_found(self, system: TicketSystem[Any]) -> None:
        with pytest.raises(TicketNotFoundError):
            await system.get(self.missing_id)

    async def test_search_filters_by_queue(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        a = await self.new(system, queues[0], "in first queue")
        b = await self.new(system, queues[1], "in second queue")
        first = {t.id for t in await system.search(TicketSearch(queue=queues[0], limit=500))}
        second = {t.id for t in await system.search(TicketSearch(queue=queues[1], limit=500))}
        assert a.id in first
        assert a.id not in second
        assert b.id in second
        assert b.id not in first

    async def test_search_pages_with_limit_and_offset(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        queue = queues[1]
        for i in range(5):
            await self.new(system, queue, f"page ticket {i}")
        everything = await system.search(TicketSearch(queue=queue, limit=500))
        first = await system.search(TicketSearch(queue=queue, limit=2))
        second = await system.search(TicketSearch(queue=queue, limit=2, offset=2))
        assert len(first) == 2
        assert len(second) == 2
        assert {t.id for t in first}.isdisjoint({t.id for t in second})
        assert [t.id for t in first + second] == [t.id for t in everything[:4]]

    async def test_search_by_updated_since(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        old = await self.new(system, queues[0], "older ticket")
        future = datetime.now(UTC) + timedelta(days=1)
        assert await system.search(TicketSearch(queue=queues[0], updated_since=future)) == []
        past = datetime.now(UTC) - timedelta(days=1)
        found = await system.search(TicketSearch(queue=queues[0], updated_since=past, limit=500))
        assert old.id in {t.id for t in found}

    async def test_update_changes_queue_priority_and_state(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        ticket = await self.new(system, queues[0], "to be moved", priority=Priority.LOW)
        updated = await system.update(
            ticket.id, TicketChanges(queue=queues[1], priority=Priority.VERY_HIGH, state="open")
        )
        assert updated.queue == queues[1]
        again = await system.get(ticket.id)
        assert again.queue == queues[1]
        assert again.priority == Priority.VERY_HIGH
        assert again.state == "open"

    async def test_update_changes_the_subject(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        ticket = await self.new(system, queues[0], "printer broken")
        updated = await system.update(ticket.id, TicketChanges(subject="[sorted] printer broken"))
        assert updated.subject == "[sorted] printer broken"
        again = await system.get(ticket.id)
        assert again.subject == "[sorted] printer broken"
        assert again.queue == queues[0]

    async def test_an_empty_update_changes_nothing(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        ticket = await self.new(system, queues[0], "left alone")
        same = await system.update(ticket.id, TicketChanges())
        assert same.queue == ticket.queue
        assert same.priority == ticket.priority

    async def test_update_unknown_ticket_raises_not_found(self, system: TicketSystem[Any]) -> None:
        with pytest.raises(TicketNotFoundError):
            await system.update(self.missing_id, TicketChanges(state="open"))

    async def test_custom_fields_are_kept(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        if not self.supports_custom_fields:
            pytest.skip("this adapter's test system has no custom fields configured")
        ticket = await self.new(system, queues[0], "with fields")
        await system.update(ticket.id, TicketChanges(custom_fields={"otai_label": "billing"}))
        assert (await system.get(ticket.id)).custom_fields.get("otai_label") == "billing"

    async def test_notes_are_added_and_listed(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        ticket = await self.new(system, queues[0], "needs a note")
        added = await system.add_note(ticket.id, Note(body="classified as billing (0.93)"))
        assert added.id
        await system.add_note(ticket.id, Note(body="second note"))
        bodies = [note.body for note in await system.notes(ticket.id)]
        assert any("classified as billing (0.93)" in body for body in bodies)
        assert any("second note" in body for body in bodies)
        first = next(i for i, b in enumerate(bodies) if "classified as billing" in b)
        second = next(i for i, b in enumerate(bodies) if "second note" in b)
        assert first < second

    async def test_note_on_unknown_ticket_raises_not_found(self, system: TicketSystem[Any]) -> None:
        with pytest.raises(TicketNotFoundError):
            await system.add_note(self.missing_id, Note(body="x"))

    async def test_concurrent_calls_are_safe(
        self, system: TicketSystem[Any], queues: tuple[str, str]
    ) -> None:
        created = await asyncio.gather(
            *(self.new(system, queues[0], f"concurrent {i}") for i in range(8))
        )
        assert len({t.id for t in created}) == 8
        fetched = await asyncio.gather(*(system.get(t.id) for t in created))
        assert [t.subject for t in fetched] == [t.subject for t in created]
