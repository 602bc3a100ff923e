"""``otai tickets``: list, show, count, add and import tickets of the embedded SQLite
helpdesk."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich import box
from rich.console import Console, OverflowMethod
from rich.table import Table
from rich.text import Text

from open_ticket_ai.core.config.loader import ENV_VAR, find_config, load_config
from open_ticket_ai.core.config.validation import issues_of
from open_ticket_ai.core.config.yaml_source import format_path
from open_ticket_ai.core.durations import parse_duration
from open_ticket_ai.core.factory import build
from open_ticket_ai.demo.sample_tickets import EXPECTED_QUEUE
from open_ticket_ai.errors import OpenTicketAIError, TicketNotFoundError
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Note, Ticket, TicketSearch
from open_ticket_ai.tickets.pipes import MARKER_PREFIX

__all__ = ["is_routed", "tickets"]

DEFAULT_DB: str = str(SqliteParams.model_fields["path"].default)
EXIT_USAGE = 2
_PAGE = 500

T = TypeVar("T")


def _usage_error(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(EXIT_USAGE)


def _db_from_config(config: str | None) -> tuple[str, str]:
    """The file of the config's first SqliteTicketSystem service, with its params rendered
    as ``otai run`` renders them, and where it comes from; a missing or broken config ends
    the command (exit 2)."""
    try:
        compiled = build(load_config(find_config(config)))
    except OpenTicketAIError as exc:
        _usage_error(str(exc))
    file = compiled.loaded.source.file
    for service_id, service in compiled.services.items():
        if isinstance(service, SqliteTicketSystem):
            return service.params.path, f"service {service_id!r} of {file}"
    services = ", ".join(f"{k} ({type(v).__name__})" for k, v in compiled.services.items())
    _usage_error(
        f"{file}: no SqliteTicketSystem service (services: {services or 'none'}); "
        "give the helpdesk file with --db"
    )


@dataclass
class _Helpdesk:
    """Where the helpdesk file is, worked out when a command needs it (so that ``--help``
    never reads a config)."""

    db: str | None
    config: str | None

    def found(self) -> tuple[str, str | None]:
        """The path, and the config service it comes from (None for --db or the default)."""
        if self.db:
            return self.db, None
        named = self.config or os.environ.get(ENV_VAR)
        if not named and not find_config(None).exists():
            return DEFAULT_DB, None
        return _db_from_config(self.config)

    def path(self) -> str:
        return self.found()[0]

    def existing(self) -> str:
        """The path, which must be there: reading commands never create a helpdesk."""
        path, origin = self.found()
        if not Path(path).exists():
            raise click.ClickException(
                f"no helpdesk file at {path}" + (f" (the path of {origin})" if origin else "")
            )
        return path


@click.group()
@click.option("--db", type=click.Path(dir_okay=False), help="The helpdesk's SQLite file.")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    help="Take the file from this config's SqliteTicketSystem service.",
)
@click.pass_context
def tickets(ctx: click.Context, db: str | None, config: str | None) -> None:
    """The embedded helpdesk: its file is --db, else the path of the SqliteTicketSystem
    service of the config (--config, $OTAI_CONFIG or ./config.yml, rendered as otai run
    renders it), else ./otai-helpdesk.sqlite when there is no config at all. A config that
    is missing, broken or has no such service is an error (exit 2)."""
    ctx.obj = _Helpdesk(db, config)


def _open(path: str) -> SqliteTicketSystem:
    return SqliteTicketSystem(SqliteParams(path=path), id="helpdesk")


def _run(path: str, work: Callable[[SqliteTicketSystem], Awaitable[T]]) -> T:
    """Open the helpdesk, do ``work``, close it; its errors end the command (exit 1)."""

    async def go() -> T:
        system = _open(path)
        await system.open()
        try:
            return await work(system)
        finally:
            await system.close()

    try:
        return asyncio.run(go())
    except OpenTicketAIError as exc:
        raise click.ClickException(str(exc)) from None


async def _search(system: SqliteTicketSystem, criteria: TicketSearch) -> list[Ticket]:
    """Every ticket matching ``criteria``, in id order."""
    found: list[Ticket] = []
    offset = 0
    while True:
        page = await system.search(criteria.model_copy(update={"limit": _PAGE, "offset": offset}))
        found.extend(page)
        if len(page) < _PAGE:
            break
        offset += len(page)
    unique = {ticket.id: ticket for ticket in found}
    return sorted(unique.values(), key=lambda t: int(t.id))


def is_routed(notes: list[Note]) -> bool:
    """True when a note carries an open-ticket-ai marker line (``[otai:...]``)."""
    return any(
        line.strip().startswith(MARKER_PREFIX) and line.strip().endswith("]")
        for note in notes
        for line in note.body.splitlines()
    )


def _console(wide: bool = False) -> Console:
    """Rich output on stdout; when it is not a terminal and ``wide`` is asked, no width limit,
    so whole texts stay on their lines (for grep and files)."""
    console = Console(highlight=False)
    if wide and not console.is_terminal:
        console = Console(highlight=False, width=100_000)
    return console


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``: a date/time (local time unless it names its zone) or a duration back
    from now."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise click.BadParameter("a duration back from now cannot be negative")
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a date/time (2024-05-01, 2024-05-01T14:30, "
            "2024-05-01T14:30+02:00) nor a duration back from now (30m, 2h, 1d)"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


@tickets.command("list")
@click.option("--queue", help="Only tickets in this queue.")
@click.option("--state", help="Only tickets in this state (new, open, ...).")
@click.option(
    "--since",
    "since",
    metavar="WHEN",
    callback=_since,
    help=(
        "Only tickets created or changed since WHEN: a date/time (2024-05-01T14:30, local"
        " time unless it names its zone) or a duration back from now (30m, 2h, 1d)."
    ),
)
@click.option(
    "--routed",
    is_flag=True,
    help="Only tickets with a note carrying an open-ticket-ai marker line ([otai:...]).",
)
@click.option(
    "--wide",
    is_flag=True,
    help="Whole subjects and the whole latest note, instead of lines cut to fit.",
)
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Show at most this many tickets (the newest).",
)
@click.pass_obj
def list_tickets(
    helpdesk: _Helpdesk,
    queue: str | None,
    state: str | None,
    since: datetime | None,
    routed: bool,
    wide: bool,
    limit: int,
) -> None:
    """Show tickets as a table: id, queue, priority, state, subject and the latest note."""
    path = helpdesk.existing()

    async def work(system: SqliteTicketSystem) -> tuple[list[tuple[Ticket, list[Note]]], int]:
        found = await _search(system, TicketSearch(queue=queue, state=state, updated_since=since))
        if routed:
            with_notes = [(t, await system.notes(t.id)) for t in found]
            matching = [(t, notes) for t, notes in with_notes if is_routed(notes)]
        else:
            matching = [(t, []) for t in found]
        shown = matching[-limit:]
        if not routed:
            shown = [(t, await system.notes(t.id)) for t, _ in shown]
        return shown, len(matching)

    shown, total = _run(path, work)
    if shown:
        _print_list(shown, wide)
    count = f"{total} tickets" if len(shown) == total else f"{len(shown)} of {total} tickets"
    click.echo(count + ("" if len(shown) == total else " (the newest; raise --limit for more)"))


def _print_list(rows: list[tuple[Ticket, list[Note]]], wide: bool) -> None:
    heads = ("id", "queue", "priority", "state", "subject", "latest note")
    cells = []
    for ticket, notes in rows:
        note = notes[-1].body.strip() if notes else ""
        cells.append(
            (
                ticket.id,
                ticket.queue or "-",
                ticket.priority.label if ticket.priority else "-",
                ticket.state or "-",
                ticket.subject if wide else _first_line(ticket.subject),
                note if wide else _first_line(note),
            )
        )
    console = _console(wide)
    widths: list[int | None] = [None] * len(heads)
    if not wide:
        # Cut to the terminal: the short columns whole (a queue to 16), the rest shared by
        # subject (up to 2/5) and note, each cut with an ellipsis.
        natural = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
        natural[1] = min(natural[1], 16)
        room = console.width - 2 - 3 * (len(heads) - 1) - sum(natural[:4])
        subject = min(natural[4], max(8, room * 2 // 5))
        widths = [*natural[:4], subject, max(8, room - subject)]
    overflow: OverflowMethod = "fold" if wide else "ellipsis"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, head in enumerate(heads):
        table.add_column(
            head,
            justify="right" if head == "id" else "left",
            no_wrap=not wide or i < 4,
            overflow=overflow,
            max_width=widths[i],
        )
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


@tickets.command("show")
@click.argument("ticket_id", metavar="ID")
@click.pass_obj
def show_ticket(helpdesk: _Helpdesk, ticket_id: str) -> None:
    """Print ticket ID: every field, its custom fields, its whole text and every note."""
    path = helpdesk.existing()

    async def work(system: SqliteTicketSystem) -> tuple[Ticket, list[Note]] | None:
        try:
            return await system.get(ticket_id), await system.notes(ticket_id)
        except TicketNotFoundError:
            return None

    found = _run(path, work)
    if found is None:
        click.echo(f"Error: no ticket {ticket_id!r} in {path}", err=True)
        sys.exit(1)
    ticket, notes = found
    shown: list[tuple[str, Any]] = [
        ("id", ticket.id),
        ("subject", ticket.subject),
        ("queue", ticket.queue),
        ("priority", ticket.priority.label if ticket.priority else None),
        ("state", ticket.state),
        ("requester", ticket.requester),
        ("created", _when(ticket.created)),
        ("updated", _when(ticket.updated)),
        ("routed", "yes" if is_routed(notes) else "no"),
    ]
    shown += [(f"{name} (custom field)", value) for name, value in ticket.custom_fields.items()]
    width = max(len(name) for name, _ in shown)
    for name, value in shown:
        click.echo(f"{name + ':':<{width + 1}}  {_value(value)}")
    click.echo(f"\n--- body ---\n{ticket.body}" if ticket.body else "\n--- body: empty ---")
    click.echo(f"\n{len(notes)} note{'' if len(notes) == 1 else 's'}")
    for number, note in enumerate(notes, 1):
        click.echo(
            f"\n--- note {number} of {len(notes)} (id {note.id}, {_when(note.created)}, "
            f"subject {note.subject!r}) ---\n{note.body}"
        )


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class _Stats:
    queues: Counter[str]
    routed: list[tuple[str, str | None]]
    """(expected queue, queue now) of each routed ticket that names its expected queue."""
    waiting: int
    """Tickets that name their expected queue and are not routed yet."""


@tickets.command("stats")
@click.pass_obj
def stats(helpdesk: _Helpdesk) -> None:
    """Count the tickets by queue and, for tickets that name the queue a human would give them
    (the demo's custom field expected_queue), how many routed ones landed there."""
    path = helpdesk.existing()

    async def work(system: SqliteTicketSystem) -> _Stats:
        queues: Counter[str] = Counter()
        routed: list[tuple[str, str | None]] = []
        waiting = 0
        for ticket in await _search(system, TicketSearch()):
            queues[ticket.queue or "-"] += 1
            expected = ticket.custom_fields.get(EXPECTED_QUEUE)
            if not isinstance(expected, str) or not expected:
                continue
            if is_routed(await system.notes(ticket.id)):
                routed.append((expected, ticket.queue))
            else:
                waiting += 1
        return _Stats(queues, routed, waiting)

    found = _run(path, work)
    total = sum(found.queues.values())
    console = _console()
    by_queue = Table(title="Tickets by queue", box=box.SIMPLE_HEAD, title_justify="left")
    by_queue.add_column("queue")
    by_queue.add_column("tickets", justify="right")
    by_queue.add_column("share", justify="right")
    for queue, count in sorted(found.queues.items(), key=lambda item: (-item[1], item[0])):
        by_queue.add_row(Text(queue), str(count), _percent(count, total))
    by_queue.add_section()
    by_queue.add_row(Text("total"), str(total), "")
    console.print(by_queue)
    if not found.routed:
        click.echo(
            f"No routed tickets with an expected queue (custom field {EXPECTED_QUEUE})"
            + (f"; {found.waiting} wait to be routed." if found.waiting else ".")
        )
        return
    per: dict[str, list[int]] = {}
    for expected, now in found.routed:
        counts = per.setdefault(expected, [0, 0])
        counts[0] += 1
        counts[1] += now == expected
    right = sum(counts[1] for counts in per.values())
    routed = len(found.routed)
    expected_table = Table(
        title="Routed tickets by expected queue",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    expected_table.add_column("expected queue")
    expected_table.add_column("routed", justify="right")
    expected_table.add_column("landed there", justify="right")
    expected_table.add_column("share", justify="right")
    for expected, (count, landed) in sorted(per.items()):
        expected_table.add_row(Text(expected), str(count), str(landed), _percent(landed, count))
    expected_table.add_section()
    expected_table.add_row(Text("total"), str(routed), str(right), _percent(right, routed))
    console.print(expected_table)
    click.echo(
        f"{right} of {routed} routed tickets landed in their expected queue "
        f"({_percent(right, routed)}; custom field {EXPECTED_QUEUE})"
        + (f"; {found.waiting} more wait to be routed." if found.waiting else ".")
    )


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


@tickets.command("add")
@click.option("--subject", required=True)
@click.option("--body", default="")
@click.option("--queue", default="Incoming", show_default=True)
@click.option("--priority", help="1-5 or very low / low / normal / high / very high.")
@click.option("--requester")
@click.pass_obj
def add_ticket(
    helpdesk: _Helpdesk,
    subject: str,
    body: str,
    queue: str,
    priority: str | None,
    requester: str | None,
) -> None:
    """Open a ticket."""
    try:
        new = NewTicket(
            subject=subject, body=body, queue=queue, priority=priority, requester=requester
        )
    except ValidationError as exc:
        raise click.ClickException(_describe(exc)) from None
    created = _create(helpdesk.path(), [new])
    click.echo(f"created ticket {created[0]}")


def _create(path: str, new: list[NewTicket]) -> list[str]:
    async def work(system: SqliteTicketSystem) -> list[str]:
        return [(await system.create(ticket)).id for ticket in new]

    return _run(path, work)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise click.ClickException(f"{path}:{number}: not JSON: {exc}") from None
        else:
            for number, row in enumerate(csv.DictReader(handle), 2):
                yield number, {k: v for k, v in row.items() if v not in (None, "")}


@tickets.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--queue", default="Incoming", show_default=True, help="For rows without one.")
@click.pass_obj
def import_tickets(helpdesk: _Helpdesk, file: Path, queue: str) -> None:
    """Import tickets from a CSV (header: subject, body, queue, priority, requester) or a
    JSONL file (one object per line, same keys). Nothing is imported if a row is invalid."""
    fields = set(NewTicket.model_fields)
    new: list[NewTicket] = []
    problems: list[str] = []
    for number, row in _rows(file):
        if not isinstance(row, dict):
            problems.append(f"{file}:{number}: expected an object")
            continue
        try:
            new.append(
                NewTicket.model_validate(
                    {"queue": queue, **{k: v for k, v in row.items() if k in fields}}
                )
            )
        except ValidationError as exc:
            problems.append(f"{file}:{number}: {_describe(exc)}")
    if problems:
        click.echo("\n".join(problems), err=True)
        sys.exit(EXIT_USAGE)
    path = helpdesk.path()
    created = _create(path, new)
    click.echo(f"imported {len(created)} tickets into {path}")


def _describe(exc: ValidationError) -> str:
    """The problems of one row, worded as config problems are."""
    return "; ".join(
        f"{format_path(issue.loc) or 'row'}: {issue.message}" for issue in issues_of(exc, NewTicket)
    )
