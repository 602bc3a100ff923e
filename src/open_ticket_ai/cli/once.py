"""What ``otai run --once`` prints when its run ends: each step's status, time and value."""

from __future__ import annotations

import json
from typing import Any

import click

from open_ticket_ai.core.secrets import SECRETS
from open_ticket_ai.runtime.events import RunEnded

__all__ = ["print_run", "shorten"]

VALUE_WIDTH = 100


def shorten(value: Any, width: int = VALUE_WIDTH) -> str:
    """``value`` as one line of JSON (or its repr), cut to ``width`` characters."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _echo(text: str) -> None:
    click.echo(SECRETS.redact(text))


def print_run(event: RunEnded) -> None:
    """Print the run's steps (status, duration, attempts, value or message), then its
    actions, decisions and outcome, to stdout."""
    dry = " (dry run)" if event.dry_run else ""
    _echo(f"run {event.run_id} of runner {event.runner!r}{dry}")
    for step in event.steps:
        result = event.results.get(step.step_id)
        shown = ""
        if result is not None and "value" in result.data:
            shown = shorten(result.data["value"])
        elif step.items:
            counts: dict[str, int] = {}
            for status in step.items:
                counts[status.value] = counts.get(status.value, 0) + 1
            shown = "items: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        if step.message and (not shown or step.status.value != "succeeded"):
            shown = f"{shown}  ({step.message})" if shown else step.message
        tries = f" x{step.attempts}" if step.attempts > 1 else ""
        took = f"{step.duration * 1000:8.1f}ms{tries}"
        _echo(f"  {step.status.value:<9} {took}  {step.step_id}: {shown}")
    for action in event.actions:
        _echo(f"  action: {action.describe()}")
    for decision in event.decisions:
        _echo(f"  decision: {decision.describe()}")
    line = f"{event.outcome.value} in {event.duration * 1000:.1f}ms"
    if event.error:
        line += f": {event.error}"
    _echo(line)
