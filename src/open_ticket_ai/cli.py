"""The ``otai`` command. Signal handling and logging set-up live here."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.core.config.models import AppConfig, OrchestratorConfig
from open_ticket_ai.core.factory import CompiledConfig, build
from open_ticket_ai.errors import OpenTicketAIError

__all__ = ["main"]

EXIT_CONFIG = 2

config_argument = click.argument("config", required=False, type=click.Path(dir_okay=False))


def _build(config: str | None) -> CompiledConfig:
    try:
        return build(load_config(config))
    except OpenTicketAIError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)


@click.group()
@click.version_option(package_name="open-ticket-ai")
def cli() -> None:
    """open-ticket-ai: keeps helpdesk automation pipelines running on time."""


@cli.command()
@config_argument
def validate(config: str | None) -> None:
    """Check CONFIG (default: $OTAI_CONFIG, else ./config.yml) and exit 0 if it is valid."""
    compiled = _build(config)
    runners = len(compiled.runners)
    click.echo(
        f"{compiled.loaded.source.file}: ok, {runners} runner{'s' if runners != 1 else ''}, "
        f"{len(compiled.triggers)} trigger{'s' if len(compiled.triggers) != 1 else ''}, "
        f"{compiled.pipe_count} pipe{'s' if compiled.pipe_count != 1 else ''}"
    )


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editor completion)."""
    app = AppConfig.model_json_schema(by_alias=True)
    orchestrator = OrchestratorConfig.model_json_schema(by_alias=True)
    document: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "open-ticket-ai config",
        "anyOf": [
            {
                "type": "object",
                "properties": {"open_ticket_ai": {"$ref": "#/$defs/AppConfig"}},
                "required": ["open_ticket_ai"],
                "additionalProperties": False,
            },
            {"$ref": "#/$defs/AppConfig"},
            {"$ref": "#/$defs/OrchestratorConfig"},
        ],
        "$defs": {
            **app.pop("$defs", {}),
            **orchestrator.pop("$defs", {}),
            "AppConfig": app,
            "OrchestratorConfig": orchestrator,
        },
    }
    click.echo(json.dumps(document, indent=2))


def main() -> None:
    cli(prog_name="otai")
