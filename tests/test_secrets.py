"""Secrets are never shown: not in log lines (text or JSON), not in the ledger, not in
``otai run --once`` or ``otai validate`` output, not even when a helpdesk echoes a password
back in its error or a URL carries credentials."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.http_server import HttpServer, Reply

from open_ticket_ai import build, parse_config
from open_ticket_ai.cli.log_format import JsonFormatter, TextFormatter
from open_ticket_ai.core.secrets import Secrets

TOKEN = "zq-token-7f3a9c"  # the configured secret of the tests below


def test_redact_hides_values_and_url_credentials() -> None:
    secrets = Secrets()
    secrets.add(["hunter22", "ab"])  # too short to be a secret: left alone
    text = (
        "login hunter22 failed at https://bob:pa55word@desk.example/api?api_token=t0k&page=2 (ab)"
    )
    shown = secrets.redact(text)
    assert "hunter22" not in shown
    assert "pa55word" not in shown
    assert "t0k" not in shown
    assert "page=2" in shown
    assert "(ab)" in shown


def test_a_built_configs_secrets_are_hidden_in_both_log_formats() -> None:
    build(
        parse_config(
            f"""
            services:
              - id: desk
                use: ZammadTicketSystem
                params: {{url: "https://desk.example", token: "{TOKEN}"}}
            orchestrator:
              runners: []
            """.replace("\n            ", "\n"),
            "t.yml",
        )
    )
    record = logging.LogRecord(
        "open_ticket_ai", logging.ERROR, __file__, 1, "desk said: bad token %s", (TOKEN,), None
    )
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert TOKEN not in line
        assert "bad token ***" in line


def test_a_secret_field_never_prints_its_value_in_a_validation_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "services:\n"
        "  - id: rt\n"
        "    use: RequestTrackerTicketSystem\n"
        '    params: {url: "http://rt.example", token: 982451653123}\n'
        "orchestrator:\n  runners: []\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "open_ticket_ai", "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "params.token" in done.stdout + done.stderr
    assert "982451653123" not in done.stdout + done.stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_password_echoed_by_the_helpdesk_is_not_shown_anywhere(
    tmp_path: Path, log_format: str
) -> None:
    with HttpServer() as helpdesk:
        helpdesk.respond(
            "/api/v1/tickets/search",
            Reply(422, json={"error": f"token {TOKEN} is not valid for this search"}),
        )
        config = tmp_path / "config.yml"
        config.write_text(
            "services:\n"
            "  - id: desk\n"
            "    use: ZammadTicketSystem\n"
            f'    params: {{url: "{helpdesk.url}", token: "{TOKEN}"}}\n'
            "orchestrator:\n"
            "  runners:\n"
            "    - id: fetch\n"
            "      on: [{id: hourly, params: {hours: 1}}]\n"
            "      run: {id: f, use: FetchTicketsPipe, params: {ticket_system: desk}}\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "open_ticket_ai",
                "run",
                "--once",
                "fetch",
                str(config),
                "--log-format",
                log_format,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert helpdesk.hits("/api/v1/tickets/search"), "the helpdesk was never asked"
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "is not valid for this search" in output  # the error is there ...
    assert TOKEN not in output  # ... without the secret
    with sqlite3.connect(tmp_path / "var" / "otai-ledger.sqlite") as db:
        stored = " ".join(
            str(v)
            for row in db.execute("SELECT error FROM runs UNION ALL SELECT message FROM steps")
            for v in row
        )
    db.close()
    assert "is not valid for this search" in stored
    assert TOKEN not in stored
