"""``otai trigger RUNNER_ID``: ask a running instance, through its HTTP listener, to fire a
runner now.

Exit codes: 0 the run started (its id is printed); 1 the instance refused (the runner is
busy, or the instance is stopping; the reason is printed); 2 the request could not be made
or was wrong (usage, no connection, unknown runner, bad or missing token, manual fires
disabled).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx

from open_ticket_ai.cli.params import config_input
from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.http.routes import resolve_token

__all__ = ["DEFAULT_URL", "local_url", "trigger_command"]

DEFAULT_URL = "http://127.0.0.1:8765"
EXIT_STARTED = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"otai trigger: {message}", err=True)
    sys.exit(code)


def _from_config(path: str) -> tuple[str, str | None]:
    """The listener's URL and token as a config file sets them."""
    try:
        loaded = load_config(path).config
        settings = loaded.orchestrator.http
        if settings is None:
            return DEFAULT_URL, None
        allowed = set(loaded.env_allowlist)
        env = {k: v for k, v in os.environ.items() if k.startswith("OTAI_") or k in allowed}
        token = resolve_token(settings.token, env)
    except OpenTicketAIError as exc:
        _fail(f"cannot read {path}: {exc}")
    url = local_url(settings)
    if url is None:
        _fail(f"{path} sets orchestrator.http.port: 0 (a free port); give --url")
    return url, token


def local_url(settings: HttpListenerConfig) -> str | None:
    """The URL this machine reaches a listener with these settings at (an instance that
    listens on every interface is asked on 127.0.0.1); None for ``port: 0``, a port chosen
    when the instance started."""
    if settings.port == 0:
        return None
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _error_of(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip()


@click.command("trigger")
@click.argument("runner_id")
@config_input
@click.option("--url", help=f"The instance's listener (default {DEFAULT_URL}, or from --config).")
@click.option(
    "--token",
    envvar="OTAI_TRIGGER_TOKEN",
    help="The listener's orchestrator.http.token (default: $OTAI_TRIGGER_TOKEN, or --config's).",
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the answer.")
def trigger_command(
    runner_id: str, url: str | None, token: str | None, config: str | None, timeout: float
) -> None:
    """Fire RUNNER_ID now on a running instance (otai run) through its HTTP listener.

    The listener's address and token come from --url and --token, else from the config
    (CONFIG, else $OTAI_CONFIG, else ./config.yml when it exists), else the default address.

    Prints the run id and exits 0 when the run started; prints the reason and exits 1 when
    the instance refused (the runner is busy); exits 2 when the request could not be made."""
    if config is None and url is None:
        # The usual config, when there is one: $OTAI_CONFIG, else ./config.yml.
        usual = os.environ.get("OTAI_CONFIG") or "config.yml"
        config = usual if Path(usual).is_file() else None
    config_url, config_token = _from_config(config) if config is not None else (None, None)
    base = (url or config_url or DEFAULT_URL).rstrip("/")
    token = token or config_token
    if not base.startswith(("http://", "https://")):
        _fail(f"--url must start with http:// or https:// (got {base!r})")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    target = f"{base}/runners/{quote(runner_id, safe='')}/fire"
    try:
        response = httpx.post(target, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {base}: {type(exc).__name__}: {exc or 'no answer'}")
    if response.status_code == 202:
        answer = response.json()
        for run in answer.get("runs", []):
            click.echo(run["run_id"])
        for kept in answer.get("queued", []):
            click.echo(kept["reason"])
        return
    error = _error_of(response)
    if response.status_code == 409:
        _fail(f"refused: {error}", EXIT_REFUSED)
    if response.status_code == 401:
        hint = "" if token else " (give --token or set OTAI_TRIGGER_TOKEN)"
        _fail(f"the token was not accepted{hint}: {error}")
    _fail(f"{base} answered {response.status_code}: {error}")
