"""``orchestrator.logging`` (what Open Ticket AI's ``infrastructure.logging`` becomes): the
level and the log file of ``otai run``, where its command-line options leave them open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.otai_process import OtaiProcess

CONFIG = """\
open_ticket_ai:
  api_version: ">=1.0.0"
  infrastructure:
    logging: {level: DEBUG, log_to_file: true, log_file_path: logs/otai.log}
  orchestrator:
    use: base:SimpleSequentialOrchestrator
    params:
      steps:
        - id: greet
          use: base:SimpleSequentialRunner
          params:
            run: {id: hello, use: base:ExpressionPipe, params: {expression: hi}}
"""


def events(path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in path.read_text().splitlines() if line]


def levels(path: Path) -> set[str]:
    return {json.loads(line)["level"] for line in path.read_text().splitlines() if line}


@pytest.mark.parametrize(
    ("flags", "logged"),
    [((), True), (("--log-level", "ERROR"), False)],
    ids=["config", "command-line-wins"],
)
def test_the_configs_log_file_and_level(
    flags: tuple[str, ...], logged: bool, tmp_path: Path
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG)
    with OtaiProcess("run", "--once", "greet", str(config), "--log-format", "json", *flags) as otai:
        assert otai.wait(30) == 0, otai.log_text()
    log = tmp_path / "logs" / "otai.log"  # relative to the config file's directory
    assert log.is_file()
    seen = events(log)
    assert ("run.finished" in seen) is logged
    assert ("debug" in levels(log)) is logged  # the config's level DEBUG, unless overridden


def test_log_file_on_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG)
    mine = tmp_path / "mine.log"
    with OtaiProcess(
        "run", "--once", "greet", str(config), "--log-format", "json", "--log-file", str(mine)
    ) as otai:
        assert otai.wait(30) == 0, otai.log_text()
    assert "run.finished" in events(mine)
    assert not (tmp_path / "logs" / "otai.log").exists()
