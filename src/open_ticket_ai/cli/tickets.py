"""``otai tickets``: list, add and import tickets of the embedded SQLite helpdesk."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from open_ticket_ai.core.config.loader import find_config, load_config
from open_ticket_ai.core.config.validation import issues_of
from open_ticket_ai.core.config.yaml_source import format_path
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, TicketSearch

__all__ = ["tickets"]

DEFAULT_DB = SqliteParams.model_fields["path"].default


def _db_from_config(config: str | None) -> str | None:
    """The path of the first SqliteTicketSystem service in the config, if there is one."""
    path = find_config(config)
    if not path.exists():
        return None
    try:
        loaded = load_config(path)
    except OpenTicketAIError:
        return None
    for service in loaded.config.services:
        if service.use.rsplit(":", 1)[-1].rsplit(".", 1)[-1] == "SqliteTicketSystem":
            return str(service.params.get("path", DEFAULT_DB))
    return None


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
    """The embedded helpdesk: its file is --db, else the config's SqliteTicketSystem service
    (CONFIG, $OTAI_CONFIG or ./config.yml), else ./otai-helpdesk.sqlite."""
    ctx.obj = db or _db_from_config(config) or DEFAULT_DB


def _open(path: str) -> SqliteTicketSystem:
    return SqliteTicketSystem(SqliteParams(path=path), id="helpdesk")


async def _list(path: str, queue: str | None, limit: int) -> list[tuple[Any, str]]:
    system = _open(path)
    await system.open()
    try:
        found = await system.search(TicketSearch(queue=queue, limit=limit))
        rows = []
        for ticket in sorted(found, key=lambda t: int(t.id)):
            notes = await system.notes(ticket.id)
            last = notes[-1].body.splitlines()[0] if notes else ""
            rows.append((ticket, last))
        return rows
    finally:
        await system.close()


@tickets.command("list")
@click.option("--queue", help="Only this queue.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def list_tickets(path: str, queue: str | None, limit: int) -> None:
    """Show tickets as a table: queue, priority, state, subject and the latest note."""
    if not Path(path).exists():
        raise click.ClickException(f"no helpdesk file at {path}")
    rows = _list(path, queue, limit)
    width = shutil.get_terminal_size((120, 20)).columns
    header = f"{'id':>5}  {'queue':<12} {'priority':<10} {'state':<7} subject / latest note"
    click.echo(header)
    click.echo("-" * min(width, 100))
    listed = asyncio.run(rows)
    for ticket, note in listed:
        priority = ticket.priority.label if ticket.priority else "-"
        text = ticket.subject + (f"  → {note}" if note else "")
        rest = max(20, width - 40)
        click.echo(
            f"{ticket.id:>5}  {(ticket.queue or '-')[:12]:<12} {priority:<10} "
            f"{(ticket.state or '-')[:7]:<7} {text[:rest]}"
        )
    click.echo(f"{len(listed)} tickets")


@tickets.command("add")
@click.option("--subject", required=True)
@click.option("--body", default="")
@click.option("--queue", default="Incoming", show_default=True)
@click.option("--priority", help="1-5 or very low / low / normal / high / very high.")
@click.option("--requester")
@click.pass_obj
def add_ticket(
    path: str,
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
    created = asyncio.run(_create(path, [new]))
    click.echo(f"created ticket {created[0]}")


async def _create(path: str, new: list[NewTicket]) -> list[str]:
    system = _open(path)
    await system.open()
    try:
        return [(await system.create(ticket)).id for ticket in new]
    finally:
        await system.close()


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
def import_tickets(path: str, file: Path, queue: str) -> None:
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
        sys.exit(2)
    created = asyncio.run(_create(path, new))
    click.echo(f"imported {len(created)} tickets into {path}")


def _describe(exc: ValidationError) -> str:
    """The problems of one row, worded as config problems are."""
    return "; ".join(
        f"{format_path(issue.loc) or 'row'}: {issue.message}" for issue in issues_of(exc, NewTicket)
    )
