"""``otai runs``: read the run ledger — which runs ran, what each step did, and every change
and classification on a ticket.

The ledger file is ``--ledger FILE``, else the config's ``orchestrator.ledger.path``, else
``var/otai-ledger.sqlite`` beside the config (``--config``, ``$OTAI_CONFIG`` or
``./config.yml``). The file is opened read-only, so this works while ``otai run`` writes it.

Exit codes: 0 shown; 1 nothing to show (no ledger file yet, unknown run id, the ledger turned
off); 2 the config cannot be read.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from open_ticket_ai.cli.params import duration_value
from open_ticket_ai.core.config.loader import find_config
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.pipes.records import Action, Decision, StepReport
from open_ticket_ai.core.pipes.result import PipeStatus
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import (
    LedgerError,
    RunRecord,
    SqliteLedgerStore,
    TicketEntry,
    ledger_path_of,
)

__all__ = ["runs"]

EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2
"""As ``otai validate`` and ``otai run`` exit on a config they cannot read."""

_STYLES = {
    RunOutcome.SUCCEEDED: "green",
    RunOutcome.SKIPPED: "dim",
    RunOutcome.FAILED: "red",
    RunOutcome.TIMED_OUT: "red",
    RunOutcome.CANCELLED: "yellow",
    RunOutcome.STUCK: "magenta",
    PipeStatus.SUCCEEDED: "green",
    PipeStatus.SKIPPED: "dim",
    PipeStatus.FAILED: "red",
}
_ERROR_WIDTH = 60
_WIDE = 110
"""Terminal columns from which ``otai runs list`` has room for an error column."""

F = TypeVar("F", bound=Callable[..., Any])


class _ConfigProblem(click.ClickException):
    exit_code = EXIT_CONFIG


# -- finding the ledger -------------------------------------------------------------------


def _ledger_options(command: F) -> F:
    command = click.option(
        "--ledger",
        "ledger",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The ledger file (instead of the config's).",
    )(command)
    return click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        help="The config whose ledger to read (default: $OTAI_CONFIG, else ./config.yml).",
    )(command)


def _ledger_file(config: str | None, ledger: Path | None) -> Path:
    if ledger is not None:
        return ledger
    config_file = find_config(config)
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _ConfigProblem(
            f"config file {config_file} not found; give --config PATH or --ledger FILE"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _ConfigProblem(f"cannot read config file {config_file}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _ConfigProblem(f"{config_file}: not valid YAML: {exc}") from None
    setting = _ledger_setting(data)
    if setting is False:
        raise click.ClickException(
            f"{config_file} turns the ledger off (orchestrator.ledger: false), so no run is "
            "recorded; give --ledger FILE to read a ledger file anyway"
        )
    configured: str | None = None
    if isinstance(setting, dict):
        path = setting.get("path")
        if path is not None and not isinstance(path, str):
            raise _ConfigProblem(f"{config_file}: orchestrator.ledger.path must be a string")
        configured = path
    return ledger_path_of(config_file, configured)


def _ledger_setting(data: Any) -> Any:
    """``orchestrator.ledger`` in any root form of the config (None when absent). Read from
    the YAML alone: reading a ledger needs neither valid runners nor their plugins."""
    if not isinstance(data, dict):
        return None  # a bare runners list, or no config at all
    app = data.get("open_ticket_ai", data)
    if not isinstance(app, dict):
        return None
    orchestrator = app.get("orchestrator")
    if not isinstance(orchestrator, dict):
        # The bare form: the root is the orchestrator.
        orchestrator = app if "runners" in app else {}
    return orchestrator.get("ledger")


@contextmanager
def _opened(config: str | None, ledger: Path | None) -> Iterator[SqliteLedgerStore]:
    path = _ledger_file(config, ledger)
    if not path.exists():
        raise click.ClickException(
            f"no ledger at {path}: no run has been recorded there yet"
            + ("" if ledger is not None else " (is this the config otai run uses?)")
        )
    try:
        store = SqliteLedgerStore(path, readonly=True)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


# -- output -------------------------------------------------------------------------------


def _console() -> Console:
    # Markup off: errors and ticket texts are data, and "[...]" in them must print as is.
    # The width is the terminal's, or a roomy 120 when the output is not a terminal.
    return Console(
        width=shutil.get_terminal_size((120, 24)).columns,
        markup=False,
        emoji=False,
        highlight=False,
    )


def _local(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _took(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return format_duration(round(seconds))


def _short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    lines = (text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _status(value: RunOutcome | PipeStatus) -> Text:
    return Text(value.value, style=_STYLES.get(value, ""))


def _items(items: tuple[PipeStatus, ...]) -> str:
    """``"3 succeeded, 1 failed"`` for a for_each step's items."""
    counted = Counter(items)
    return ", ".join(f"{counted[s]} {s.value}" for s in PipeStatus if counted[s])


def _echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def _step_json(step: StepReport) -> dict[str, Any]:
    return {
        "path": step.path,
        "step_id": step.step_id,
        "status": step.status.value,
        "duration": step.duration,
        "attempts": step.attempts,
        "message": step.message,
        "items": [item.value for item in step.items],
    }


def _action_json(action: Action) -> dict[str, Any]:
    found = asdict(action)
    found["changes"] = {name: list(pair) for name, pair in action.changes.items()}
    return found


def _decision_json(decision: Decision) -> dict[str, Any]:
    found = asdict(decision)
    found["top"] = [list(pair) for pair in decision.top]
    return found


def _run_json(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "runner": record.runner,
        "trigger": record.trigger,
        "payload_size": record.payload_size,
        "scheduled": _iso(record.scheduled),
        "started": _iso(record.started),
        "ended": _iso(record.ended),
        "duration": record.duration,
        "outcome": record.outcome.value,
        "error": record.error,
        "dry_run": record.dry_run,
        "steps": [_step_json(step) for step in record.steps],
        "actions": [_action_json(action) for action in record.actions],
        "decisions": [_decision_json(decision) for decision in record.decisions],
    }


def _entry_json(entry: TicketEntry) -> dict[str, Any]:
    return {
        "at": _iso(entry.at),
        "run_id": entry.run_id,
        "runner": entry.runner,
        "action": None if entry.action is None else _action_json(entry.action),
        "decision": None if entry.decision is None else _decision_json(entry.decision),
    }


# -- the commands -------------------------------------------------------------------------


@click.group()
def runs() -> None:
    """What the runs did, from the run ledger: each run's steps, the changes it made and
    the classifications behind them."""


@runs.command("list")
@_ledger_options
@click.option("--runner", help="Only this runner's runs.")
@click.option(
    "--status",
    type=click.Choice([outcome.value for outcome in RunOutcome]),
    help="Only runs that ended so.",
)
@click.option(
    "--since",
    callback=duration_value,
    metavar="DURATION",
    help="Only runs started this long ago: 1h.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_runs(
    config: str | None,
    ledger: Path | None,
    runner: str | None,
    status: str | None,
    since: float | None,
    limit: int,
    as_json: bool,
) -> None:
    """The latest runs, newest first."""
    with _opened(config, ledger) as store:
        found = store.runs(
            runner=runner,
            outcome=RunOutcome(status) if status is not None else None,
            since=time.time() - since if since is not None else None,
            limit=limit,
        )
        path = store.path
    if as_json:
        _echo_json([_run_json(record) for record in found])
        return
    console = _console()
    if not found:
        console.print(f"no runs match in {path}")
        return
    # Ids, times and numbers never wrap; names and errors wrap. Below _WIDE columns the
    # errors would be squeezed to nothing, so they are listed under the table instead.
    wide = console.width >= _WIDE
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("run", no_wrap=True)
    table.add_column("runner", overflow="fold", min_width=6)
    table.add_column("trigger", overflow="fold", min_width=7)
    table.add_column("started", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("actions", justify="right", no_wrap=True)
    table.add_column("decisions", justify="right", no_wrap=True)
    if wide:
        table.add_column("error", overflow="fold", ratio=1, min_width=16)
    for record in found:
        table.add_row(
            record.run_id,
            record.runner,
            record.trigger or "-",
            _local(record.started),
            _took(record.duration),
            _status(record.outcome),
            str(len(record.actions)),
            str(len(record.decisions)),
            *([_short(record.error)] if wide else []),
        )
    console.print(table)
    if not wide:
        for record in found:
            if record.error:
                console.print(Text(f"{record.run_id}: {_short(record.error)}", style="red"))


@runs.command("show")
@_ledger_options
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show_run(config: str | None, ledger: Path | None, run_id: str, as_json: bool) -> None:
    """One run: its fields, each step, every action and decision."""
    with _opened(config, ledger) as store:
        record = store.run(run_id)
        path = store.path
    if record is None:
        raise click.ClickException(f"no run {run_id!r} in the ledger {path}")
    if as_json:
        _echo_json(_run_json(record))
        return
    console = _console()
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("run", record.run_id)
    fields.add_row("runner", record.runner)
    fields.add_row("trigger", record.trigger or "-")
    if record.scheduled is not None:
        fields.add_row("scheduled", _local(record.scheduled))
    fields.add_row("started", _local(record.started))
    fields.add_row("ended", _local(record.ended))
    fields.add_row("duration", _took(record.duration))
    fields.add_row("status", _status(record.outcome))
    if record.dry_run:
        fields.add_row("dry run", "yes: no change was made")
    if record.payload_size is not None:
        fields.add_row("payload", f"{record.payload_size} bytes")
    if record.error:
        fields.add_row("error", Text(record.error, style="red"))
    console.print(fields)
    if record.steps:
        console.print()
        steps = Table(
            title="steps", title_justify="left", box=None, pad_edge=False, padding=(0, 1, 0, 0)
        )
        steps.add_column("step", no_wrap=True)
        steps.add_column("status", no_wrap=True)
        steps.add_column("duration", justify="right", no_wrap=True)
        steps.add_column("attempts", justify="right", no_wrap=True)
        steps.add_column("items", overflow="fold", min_width=12)
        steps.add_column("message", overflow="fold", ratio=1)
        for step in record.steps:
            steps.add_row(
                f"{step.step_id}\n{step.path}" if step.path else step.step_id,
                _status(step.status),
                _took(step.duration),
                str(step.attempts),
                _items(step.items),
                step.message,
            )
        console.print(steps)
    for title, lines in (
        ("actions", [(a.describe(), a.step, a.system) for a in record.actions]),
        ("decisions", [(d.describe(), d.step, None) for d in record.decisions]),
    ):
        if not lines:
            continue
        console.print()
        console.print(Text(title, style="bold"))
        for n, (text, origin, system) in enumerate(lines, 1):
            console.print(Text(f"{n:>3}. {text}"))
            where = ", ".join(part for part in (f"in {system}" if system else "", origin) if part)
            if where:
                console.print(Text(f"     {where}", style="dim"))


@runs.command("tickets")
@_ledger_options
@click.argument("ticket_id")
@click.option("--system", help="Only changes in this ticket system (its service id).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ticket_history(
    config: str | None,
    ledger: Path | None,
    ticket_id: str,
    system: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Every action and decision on one ticket, newest first."""
    with _opened(config, ledger) as store:
        found = store.ticket(ticket_id, system=system, limit=limit)
        path = store.path
    if as_json:
        _echo_json([_entry_json(entry) for entry in found])
        return
    console = _console()
    if not found:
        console.print(f"nothing recorded on ticket {ticket_id} in {path}")
        return
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("at", no_wrap=True)
    table.add_column("run", no_wrap=True)
    table.add_column("runner", overflow="fold", min_width=6)
    table.add_column("what", overflow="fold", ratio=1)
    for entry in found:
        if entry.action is not None:
            what, step, system = entry.action.describe(), entry.action.step, entry.action.system
        elif entry.decision is not None:
            what, step, system = entry.decision.describe(), entry.decision.step, None
        else:  # pragma: no cover - a TicketEntry holds one of the two
            continue
        cell = Text(what)
        where = ", ".join(part for part in (f"in {system}" if system else "", step) if part)
        if where:
            cell.append(f"\n{where}", style="dim")
        table.add_row(_local(entry.at), entry.run_id, entry.runner, cell)
    console.print(table)
