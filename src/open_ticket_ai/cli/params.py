"""Click parameter helpers shared by the ``otai`` commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from open_ticket_ai.core.durations import parse_duration

__all__ = ["CONFIG_HELP", "config_input", "duration_value"]

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_HELP = "The config file: CONFIG, else $OTAI_CONFIG, else ./config.yml."


def config_input(func: F) -> F:
    """The config file as the CONFIG argument or as ``--config CONFIG``, the same in every
    command (the command gets it as ``config``; None means the default)."""

    @functools.wraps(func)
    def wrapper(*args: Any, config: str | None, config_option: str | None, **kwargs: Any) -> Any:
        if config is not None and config_option is not None and config != config_option:
            raise click.UsageError(
                f"the config is given twice ({config!r} and --config {config_option!r}): "
                "give it once"
            )
        return func(*args, config=config or config_option, **kwargs)

    option = click.option(
        "--config",
        "config_option",
        metavar="CONFIG",
        type=click.Path(dir_okay=False),
        help=CONFIG_HELP,
    )
    argument = click.argument("config", required=False, type=click.Path(dir_okay=False))
    return argument(option(wrapper))  # type: ignore[return-value]


def duration_value(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: ``30s``, ``5m``, ``1h`` ... as seconds (None stays None)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
