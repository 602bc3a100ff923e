"""The TicketSystem interface: what every helpdesk adapter provides."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from open_ticket_ai.core.component import ParamsT
from open_ticket_ai.core.services import Service
from open_ticket_ai.runtime.events import HelpdeskRequest, HelpdeskRetry
from open_ticket_ai.tickets.models import NewTicket, Note, Ticket, TicketChanges, TicketSearch

__all__ = ["TicketSystem"]


class TicketSystem(Service[ParamsT]):
    """A helpdesk, declared under ``services:`` and shared by every pipe that names its id.

    Adapters raise :class:`open_ticket_ai.errors.TicketSystemError` with the system's answer
    on failure; 5xx answers and timeouts are retried inside the adapter first.
    """

    kind: ClassVar[str] = "ticket system"
    takes_ids: ClassVar[frozenset[str]] = frozenset()
    """Which of ``queue``, ``state`` and ``priority`` this system can be given by its own id
    (``TicketSearch.queue_id``, ``TicketChanges.state_id``, ...); the ticket pipes refuse
    the others with the fix before calling."""

    @abstractmethod
    async def search(self, criteria: TicketSearch) -> list[Ticket]:
        """Tickets matching every criterion, oldest update first, one page."""

    @abstractmethod
    async def get(self, ticket_id: str) -> Ticket:
        """One ticket; TicketNotFoundError when there is none."""

    @abstractmethod
    async def create(self, ticket: NewTicket) -> Ticket:
        """Open a ticket."""

    @abstractmethod
    async def update(self, ticket_id: str, changes: TicketChanges) -> Ticket:
        """Apply the changes and return the ticket as it is now."""

    @abstractmethod
    async def add_note(self, ticket_id: str, note: Note) -> Note:
        """Add an internal note and return it with its id."""

    @abstractmethod
    async def notes(self, ticket_id: str) -> list[Note]:
        """The ticket's internal notes, oldest first."""

    def answered(self, method: str, status: int, duration: float) -> None:
        """Report one request sent to the helpdesk (``status`` 0: no answer) as
        ``helpdesk.request`` on the orchestrator's bus; adapters call it for each attempt
        (their HelpdeskClient does, given ``on_response=self.answered``)."""
        if self.publish is not None:
            self.publish(
                HelpdeskRequest(system=self.id, method=method, status=status, duration=duration)
            )

    def retrying(self, call: str, attempt: int, delay: float, reason: str) -> None:
        """Report a call sent again after ``delay`` as ``helpdesk.retry`` (INFO)."""
        if self.publish is not None:
            self.publish(
                HelpdeskRetry(
                    system=self.id, call=call, attempt=attempt, delay=delay, reason=reason
                )
            )

    def ticket_url(self, ticket_id: str) -> str | None:
        """Where a person opens the ticket in the helpdesk's own web interface (the console
        links to it), or None when the adapter does not know."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the adapter talks to, for logs (never credentials)."""
        return {"id": self.id, "kind": type(self).__name__}
