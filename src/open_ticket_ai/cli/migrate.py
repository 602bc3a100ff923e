"""``otai migrate``: a config in Open Ticket AI's format, written in this project's."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from open_ticket_ai.core.config.migration import migrate
from open_ticket_ai.errors import ConfigError

__all__ = ["migrate_command"]

EXIT_CONFIG = 2


@click.command("migrate")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the migrated config to this file (never the input itself); default: stdout.",
)
def migrate_command(config: str, output: str | None) -> None:
    """Write CONFIG, a config in Open Ticket AI's 1.0 or 1.1+ format, in this project's format.

    Its comments are kept, each translated spot is marked with a `# was:` comment, and what
    has no meaning here is listed at the top. A config in this project's format already is
    said to be so (exit 0, nothing written). Environment variables are not applied: the
    output keeps the file's own templates."""
    source = Path(config)
    if output is not None and Path(output).resolve() == source.resolve():
        click.echo(f"-o {output}: that is the input; give another file", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        click.echo(f"{config}: config file not found", err=True)
        sys.exit(EXIT_CONFIG)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"{config}: cannot read config file: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        migrated = migrate(text, config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    if migrated.text is None:
        click.echo(f"{config}: in this project's format already; nothing to migrate", err=True)
        return
    if output is None:
        click.echo(migrated.text, nl=False)
        return
    try:
        Path(output).write_text(migrated.text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"-o {output}: cannot write: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"{output}: written, read as {migrated.format} format", err=True)
