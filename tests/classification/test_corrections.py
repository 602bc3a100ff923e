"""Training learns from the corrections people make in the console's review queue: they win
over a ticket's own field, and corrected tickets outside the search are fetched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from open_ticket_ai.classification.training import corrections_of, examples_from_tickets
from open_ticket_ai.core.pipes.records import Action
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import CONSOLE_RUNNER, RunRecord
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, TicketSearch


def correction(
    run: int, ticket_id: str, before: str, after: str, system: str = "desk"
) -> RunRecord:
    return RunRecord(
        run_id=f"{CONSOLE_RUNNER}-{run}",
        runner=CONSOLE_RUNNER,
        trigger="review:alice",
        payload_size=None,
        scheduled=None,
        started=1000.0 + run,
        ended=1000.0 + run,
        outcome=RunOutcome.SUCCEEDED,
        error=None,
        dry_run=False,
        steps=(),
        actions=(Action.ticket_updated(ticket_id, system, {"queue": (before, after)}),),
        decisions=(),
    )


def test_the_newest_correction_of_a_ticket_in_that_system_wins() -> None:
    runs = [  # newest first, as the ledger lists them
        correction(3, "7", "Billing", "Sales"),
        correction(2, "7", "Review", "Billing"),
        correction(1, "8", "Review", "HR", system="other"),
    ]
    assert corrections_of(runs, "desk", "queue") == {"7": "Sales"}
    assert corrections_of(runs, "desk", "priority") == {}


async def test_corrections_override_labels_and_bring_in_tickets_outside_the_search(
    tmp_path: Path,
) -> None:
    desk = SqliteTicketSystem(SqliteParams(path=str(tmp_path / "desk.sqlite")), id="desk")
    await desk.open()
    try:
        routed = await desk.create(NewTicket(subject="Invoice twice", queue="Review"))
        closed = await desk.create(NewTicket(subject="Laptop broken", queue="Archive"))
        plain = await desk.create(NewTicket(subject="New hire", queue="HR"))
        fixed = {routed.id: "Billing", closed.id: "IT Support"}
        examples = await examples_from_tickets(
            desk,
            search=TicketSearch(queue="Review", limit=50),
            corrections=fixed,
        )
        without = await examples_from_tickets(desk, search=TicketSearch(queue="Review", limit=50))
    finally:
        await desk.close()
    assert sorted(examples) == [("Invoice twice", "Billing"), ("Laptop broken", "IT Support")]
    assert without == [("Invoice twice", "Review")]
    assert plain.id not in fixed


def test_corrections_need_a_service() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "open_ticket_ai", "train", "--demo", "--corrections", "-o", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--corrections needs --service" in done.stderr
