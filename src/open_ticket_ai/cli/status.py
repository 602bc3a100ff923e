"""``otai status [CONFIG]``: each runner's state, last run, next fire and the last 24 hours.

From a running instance through its HTTP listener (``GET /status``) when one answers; else
from the files the instance leaves: the run ledger (last runs, counts) and the state file
(whether an instance holds it, each trigger's grid for the next fire).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from open_ticket_ai.cli.params import config_input
from open_ticket_ai.cli.trigger import DEFAULT_URL, local_url
from open_ticket_ai.core.compiled import CompiledConfig
from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.factory import build
from open_ticket_ai.core.triggers.base import TimeTrigger
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import LedgerError, SqliteLedgerStore, ledger_file_of
from open_ticket_ai.runtime.state import holder_of, read_state, state_file_of

__all__ = ["status_command"]

EXIT_CONFIG = 2
DAY = 86400.0


@dataclass
class RunnerRow:
    """What ``otai status`` shows of one runner."""

    runner: str
    state: str = "-"
    last_status: str | None = None
    last_started: float | None = None
    last_duration: float | None = None
    next_fire: float | None = None
    schedule: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "state": self.state,
            "last_status": self.last_status,
            "last_started": _iso(self.last_started),
            "last_duration_s": self.last_duration,
            "next_fire": _iso(self.next_fire),
            "schedule": self.schedule,
            "last_24h": self.counts,
        }


@click.command("status")
@config_input
@click.option(
    "--url", help="The instance's listener (default: from the config's orchestrator.http)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def status_command(config: str | None, url: str | None, as_json: bool) -> None:
    """Show each runner of CONFIG: state, last run, next fire, runs in the last 24 hours."""
    try:
        compiled = build(load_config(config))
    except OpenTicketAIError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    now = time.time()
    rows = {
        spec.id: RunnerRow(spec.id, schedule=_schedule(compiled, spec.id))
        for spec in compiled.runners
    }
    source_lines: list[str] = []

    target = url or _listener_url(compiled)
    live = _live_status(target) if target else None
    if live is not None:
        source_lines.append(f"instance: running (pid {live.get('pid')}), live from {target}")
    state_file = state_file_of(compiled)
    holder = holder_of(state_file) if state_file is not None else None
    if live is None:
        if holder is not None:
            source_lines.append(f"instance: running (pid {holder}); its listener is not reachable")
        elif state_file is not None:
            source_lines.append("instance: not running (its state file is not held)")
        else:
            source_lines.append(
                "instance: not reachable" + (f" at {target}" if target else " (no listener)")
            )

    ledger_file = ledger_file_of(compiled)
    if ledger_file is not None and ledger_file.is_file():
        try:
            store = SqliteLedgerStore(ledger_file, readonly=True)
        except LedgerError as exc:
            source_lines.append(f"ledger: {exc}")
        else:
            try:
                for runner, record in store.last_runs().items():
                    if runner in rows:
                        row = rows[runner]
                        row.last_status = record.outcome.value
                        row.last_started = record.started
                        row.last_duration = record.duration
                for runner, counts in store.counts(since=now - DAY).items():
                    if runner in rows:
                        rows[runner].counts = {o.value: n for o, n in counts.items() if n}
            finally:
                store.close()
            source_lines.append(f"ledger: {ledger_file}")
    elif ledger_file is not None:
        source_lines.append(f"ledger: {ledger_file} (no run recorded yet)")
    else:
        source_lines.append("ledger: off")

    if live is not None:
        _apply_live(rows, live)
    elif holder is not None and state_file is not None:
        _apply_state(rows, compiled, str(state_file), now)
    else:
        for row in rows.values():
            row.state = "not running" if state_file is not None else "-"

    if as_json:
        click.echo(
            json.dumps(
                {"sources": source_lines, "runners": [r.as_json() for r in rows.values()]},
                indent=2,
            )
        )
        return
    _print(rows.values(), source_lines, now)


def _listener_url(compiled: CompiledConfig) -> str | None:
    settings = compiled.loaded.config.orchestrator.http
    needs = any(getattr(t, "needs_http", False) for t in compiled.triggers.values())
    if settings is None:
        return DEFAULT_URL if needs else None
    return local_url(settings)


def _live_status(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url.rstrip('/')}/status", timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("runners"), dict) else None


def _apply_live(rows: dict[str, RunnerRow], live: dict[str, Any]) -> None:
    for runner, state in live["runners"].items():
        row = rows.get(runner)
        if row is None or not isinstance(state, dict):
            continue
        if state.get("running"):
            row.state = f"running {state.get('run_id')} for {state.get('running_for_s', 0):.1f}s"
        else:
            row.state = "idle"
        if state.get("last_started") is not None:
            row.last_status = state.get("last_outcome") or state.get("last_status")
            row.last_started = state.get("last_started")
            row.last_duration = state.get("last_duration_s")
        next_fire = state.get("next_fire")
        row.next_fire = float(next_fire) if isinstance(next_fire, int | float) else None


def _apply_state(
    rows: dict[str, RunnerRow], compiled: CompiledConfig, state_path: str, now: float
) -> None:
    """An instance runs but cannot be asked: next fires from its persisted grids."""
    anchors, _ = read_state(state_path)
    for spec in compiled.runners:
        row = rows[spec.id]
        row.state = "running (no listener)"
        fires: list[float] = []
        for trigger_id in spec.triggers:
            trigger = compiled.triggers.get(trigger_id)
            if not isinstance(trigger, TimeTrigger):
                continue
            anchor = anchors.get(trigger_id)
            if trigger.clock != "wall" and anchor is None:
                continue  # a monotonic grid without a persisted anchor: unknown from outside
            start = anchor if anchor is not None else now
            try:
                fire = trigger.next_fire_after(now, start)
            except Exception:  # a plugin trigger's arithmetic: never fail the status for it
                continue
            if fire is not None:
                fires.append(fire)
        row.next_fire = min(fires) if fires else None


def _schedule(compiled: CompiledConfig, runner: str) -> str:
    spec = next(s for s in compiled.runners if s.id == runner)
    if spec.one_time:
        return "once, at start"
    names = []
    for trigger_id in spec.triggers:
        trigger = compiled.triggers.get(trigger_id)
        names.append(f"{trigger_id} ({type(trigger).__name__})" if trigger else trigger_id)
    return ", ".join(names)


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ago(moment: float | None, now: float) -> str:
    if moment is None:
        return "-"
    delta = now - moment
    if delta < 0:
        return f"in {format_duration(round(-delta, 1) or 0.1)}"
    return f"{format_duration(round(delta, 1) or 0.1)} ago"


def _print(rows: Any, sources: list[str], now: float) -> None:
    width = max(100, min(200, _terminal_width()))
    console = Console(width=width, soft_wrap=False, highlight=False)
    for line in sources:
        console.print(line, markup=False)
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("runner", "state", "last run", "took", "next fire", "last 24 h", "triggers"):
        table.add_column(column, overflow="fold")
    for row in rows:
        last = (
            "-" if row.last_status is None else f"{row.last_status} {_ago(row.last_started, now)}"
        )
        took = "-" if row.last_duration is None else format_duration(round(row.last_duration, 3))
        counts = ", ".join(
            f"{n} {status}" for status, n in sorted(row.counts.items(), key=_outcome_order)
        )
        table.add_row(
            row.runner,
            row.state,
            last,
            took,
            _ago(row.next_fire, now) if row.next_fire is not None else "-",
            counts or "-",
            row.schedule,
        )
    console.print(table)


def _outcome_order(item: tuple[str, int]) -> int:
    order = [o.value for o in RunOutcome]
    return order.index(item[0]) if item[0] in order else len(order)


def _terminal_width() -> int:
    try:
        return int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
    except (OSError, ValueError):
        return 120
