"""``otai console add-user NAME``: a console user's entry for ``orchestrator.http``."""

from __future__ import annotations

import click

from open_ticket_ai.http.console.auth import ROLES, hash_password

__all__ = ["console"]


@click.group()
def console() -> None:
    """The operator's console (orchestrator.http.console)."""


@console.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when not given (given on the command line, it lands in shell history).",
)
def add_user(name: str, role: str, password: str) -> None:
    """Print the console_users entry for NAME, with an argon2 hash of the password: paste
    it under orchestrator.http.console_users. The password itself is stored nowhere."""
    if not name.strip() or any(c in name for c in ":{}[],#&*!|>'\"%@`"):
        raise click.BadParameter("use letters, digits, '.', '-' or '_'", param_hint="NAME")
    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    hashed = hash_password(password)
    click.echo("# under orchestrator.http:")
    click.echo("console_users:")
    click.echo(f"  {name}: {{password_hash: '{hashed}', role: {role}}}")
