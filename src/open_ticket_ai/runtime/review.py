"""Corrections: a person confirms or changes the label a classification gave a ticket.

The console's review queue lists decisions that fell below their threshold. Correcting one
writes the label back to the helpdesk through the same ticket system service the run used,
on the same field the run changed, and records it in the ledger as a run of the
:data:`~open_ticket_ai.runtime.ledger.CONSOLE_RUNNER` runner: one ``ticket_updated`` action
(before and after, the step naming the person) and one decision with confidence 1.0, the
labelled example ``otai runs tickets`` shows and training can learn from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from open_ticket_ai.core.pipes.records import Action, ActionKind, Decision
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import CONSOLE_RUNNER, RunRecord
from open_ticket_ai.tickets.models import Ticket, TicketChanges
from open_ticket_ai.tickets.system import TicketSystem

__all__ = ["Correction", "CorrectionError", "correct"]

_FIELDS = ("queue", "priority", "state")


class CorrectionError(OpenTicketAIError):
    """A correction that cannot be made; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Correction:
    """A correction made: the ledger record written and the decision it corrects."""

    record: RunRecord
    decision: Decision
    ticket_id: str
    field: str
    before: Any


async def correct(
    record: RunRecord | None,
    services: Mapping[str, Any],
    *,
    run_id: str,
    position: int,
    label: str,
    user: str,
    run_number: int,
) -> Correction:
    """Write ``label`` to the ticket of decision ``position`` of run ``run_id`` (``record``,
    as the ledger keeps it; None when it has none) and return the record to append to the
    ledger (as run ``console-<run_number>``). Raises
    CorrectionError when the decision, its ticket, the field the run changed or the ticket
    system cannot be found, or the helpdesk refuses the change."""
    label = label.strip()
    if not label:
        raise CorrectionError("choose a label")
    if record is None:
        raise CorrectionError(f"no run {run_id!r} in the ledger")
    if not 0 <= position < len(record.decisions):
        raise CorrectionError(f"run {run_id} has no decision {position}")
    decision = record.decisions[position]
    ticket_id = decision.ticket_id
    if ticket_id is None:
        raise CorrectionError(
            f"decision {position} of run {run_id} names no ticket: there is nothing to correct"
        )
    system_id, field = _changed_field(record, decision, ticket_id)
    system = services.get(system_id)
    if not isinstance(system, TicketSystem):
        raise CorrectionError(
            f"ticket system {system_id!r} of run {run_id} is not configured any more"
        )
    try:
        current = await system.get(ticket_id)
        before = _value(current, field)
        await system.update(ticket_id, _changes(field, label))
    except OpenTicketAIError as exc:
        raise CorrectionError(f"ticket {ticket_id} in {system_id!r}: {exc}") from exc
    now = time.time()
    step = f"console.review:{user}"
    action = Action(
        kind=ActionKind.TICKET_UPDATED,
        ticket_id=ticket_id,
        system=system_id,
        changes={field: (before, label)},
        step=step,
    )
    corrected = Decision(
        model=decision.model,
        label=label,
        confidence=1.0,
        ticket_id=ticket_id,
        used=label,
        step=step,
    )
    result = RunRecord(
        run_id=f"{CONSOLE_RUNNER}-{run_number}",
        runner=CONSOLE_RUNNER,
        trigger=f"review:{user}",
        payload_size=None,
        scheduled=None,
        started=now,
        ended=now,
        outcome=RunOutcome.SUCCEEDED,
        error=None,
        dry_run=False,
        steps=(),
        actions=(action,),
        decisions=(corrected,),
    )
    return Correction(result, decision, ticket_id, field, before)


def _changed_field(record: RunRecord, decision: Decision, ticket_id: str) -> tuple[str, str]:
    """The ticket system and field the run set from ``decision``: the update of that ticket
    whose new value is the value the decision led to."""
    used = str(decision.used)
    updates = [
        a
        for a in record.actions
        if a.kind is ActionKind.TICKET_UPDATED and a.ticket_id == ticket_id and a.system
    ]
    for action in updates:
        for name, (_, after) in action.changes.items():
            if str(after) == used:
                assert action.system is not None
                return action.system, name
    raise CorrectionError(
        f"run {record.run_id} did not set ticket {ticket_id} to {used!r}: there is no field "
        "to correct (was it a dry run, or was the update skipped?)"
    )


def _value(ticket: Ticket, field: str) -> Any:
    if field in _FIELDS:
        value = getattr(ticket, field)
        return getattr(value, "value", value)
    return ticket.custom_fields.get(field)


def _changes(field: str, label: str) -> TicketChanges:
    if field in _FIELDS:
        return TicketChanges(**{field: label})
    return TicketChanges(custom_fields={field: label})
