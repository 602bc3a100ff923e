"""Config values from ``OTAI_A__B__C`` variables and from a ``.env`` file beside the config,
as Open Ticket AI documents them, for every root form."""

from __future__ import annotations

from pathlib import Path

import pytest

from open_ticket_ai import build, parse_config
from open_ticket_ai.core.config.loader import load_config

WRAPPED = """\
open_ticket_ai:
  services:
    - id: otobo-znuny
      use: SqliteTicketSystem
      params: {path: from-file.sqlite}
  orchestrator:
    shutdown_timeout: 30s
    runners:
      - id: r
        run: {id: p, use: ExpressionPipe, params: {expression: 1}}
"""


def test_a_nested_variable_sets_a_value_and_enters_a_list_by_id() -> None:
    environ = {
        "OTAI_OPEN_TICKET_AI__SERVICES__OTOBO_ZNUNY__PARAMS__PATH": "from-env.sqlite",
        "OTAI_OPEN_TICKET_AI__ORCHESTRATOR__SHUTDOWN_TIMEOUT": "5s",
        "OTAI_DEMO_DIR": "a plain variable, no override",
        "OTAI_SOMETHING__ELSE": "another config's: ignored",
    }
    loaded = parse_config(WRAPPED, "config.yml", environ=environ)
    assert loaded.problems == ()
    assert loaded.config.services[0].params["path"] == "from-env.sqlite"
    assert loaded.config.orchestrator.shutdown_timeout == 5.0


def test_the_top_level_form_is_overridden_from_its_own_keys() -> None:
    text = (
        "orchestrator:\n"
        "  runners:\n"
        "    - id: r\n"
        "      run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n"
    )
    environ = {"OTAI_ORCHESTRATOR__RUNNERS__R__RUN__PARAMS__EXPRESSION": "2"}
    loaded = parse_config(text, "config.yml", environ=environ)
    assert loaded.config.orchestrator.runners[0].run.params["expression"] == "2"


def test_a_dotenv_file_beside_the_config_feeds_templates_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTAI_DOTENV_NAME", raising=False)
    monkeypatch.setenv("OTAI_DOTENV_WINS", "from the environment")
    (tmp_path / ".env").write_text(
        "# beside the config\n"
        "OTAI_DOTENV_NAME=from-dotenv\n"
        "OTAI_DOTENV_WINS=from the file\n"
        "OTAI_ORCHESTRATOR__SHUTDOWN_TIMEOUT=7s\n"
    )
    config = tmp_path / "config.yml"
    config.write_text(
        "orchestrator:\n"
        "  shutdown_timeout: 30s\n"
        "  runners:\n"
        "    - id: r\n"
        "      run:\n"
        "        {id: p, use: ExpressionPipe, params: {expression: '{{ env.OTAI_DOTENV_NAME }}'}}\n"
    )
    loaded = load_config(str(config))
    assert loaded.config.orchestrator.shutdown_timeout == 7.0
    compiled = build(loaded)
    assert compiled.env["OTAI_DOTENV_NAME"] == "from-dotenv"
    assert compiled.env["OTAI_DOTENV_WINS"] == "from the environment"
    assert compiled.warnings == ()  # the variable is set: no warning
