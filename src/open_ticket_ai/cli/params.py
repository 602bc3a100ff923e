"""Click parameter helpers shared by the ``otai`` commands."""

from __future__ import annotations

import click

from open_ticket_ai.core.durations import parse_duration

__all__ = ["duration_value"]


def duration_value(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: ``30s``, ``5m``, ``1h`` ... as seconds (None stays None)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
