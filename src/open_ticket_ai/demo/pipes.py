"""SampleTicketPipe: a new realistic sample ticket, for the demo's feed runner."""

from __future__ import annotations

import itertools
import random
from typing import Any, ClassVar

from pydantic import Field

from open_ticket_ai import ParamsModel, Pipe, PipeContext, PipeResult
from open_ticket_ai.demo.sample_tickets import EXPECTED_QUEUE, sample_tickets

__all__ = ["SampleTicketParams", "SampleTicketPipe"]


class SampleTicketParams(ParamsModel):
    queue: str = "Incoming"
    """Where the ticket is opened; the queue a human would give it is kept in
    ``custom_fields.expected_queue``."""
    count: int = Field(1, ge=1, le=100)


class SampleTicketPipe(Pipe[SampleTicketParams]):
    """``data.value``: a list of ``count`` new tickets (dicts for CreateTicketPipe's
    ``ticket``), different on every run."""

    _runs: ClassVar[itertools.count[int]] = itertools.count(1)

    async def process(self, ctx: PipeContext) -> PipeResult:
        seed = random.randrange(1_000_000) * 1000 + next(self._runs)
        tickets: list[dict[str, Any]] = []
        for sample in sample_tickets(self.params.count, seed=seed):
            ticket = sample.as_new_ticket().model_dump(mode="json")
            ticket["custom_fields"] = {EXPECTED_QUEUE: sample.queue}
            ticket["queue"] = self.params.queue
            ticket["priority"] = None
            tickets.append(ticket)
        return PipeResult.success({"value": tickets})
