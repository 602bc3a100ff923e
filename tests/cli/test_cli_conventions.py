"""What every ``otai`` command shares: the config as CONFIG or --config, exit code 2 for a
bad config or bad usage, and help texts without raw markup or mixed-case choices."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from open_ticket_ai.cli.main import cli

CONFIG = "runners:\n  - id: r\n    run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n"


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("words", commands(), ids=lambda w: " ".join(w) or "otai")
def test_help_has_no_raw_markup_and_only_lower_case_choices(words: tuple[str, ...]) -> None:
    shown = CliRunner().invoke(cli, [*words, "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "``" not in shown.output
    assert ":class:" not in shown.output
    for choices in re.findall(r"\[([a-zA-Z]+(?:\|[a-zA-Z]+)+)\]", shown.output):
        assert choices == choices.lower(), f"{' '.join(words)}: [{choices}]"


@pytest.mark.parametrize("command", ["validate", "status"])
def test_the_config_is_the_argument_or_the_option(tmp_path: Path, command: str) -> None:
    path = tmp_path / "c.yml"
    path.write_text(CONFIG)
    runner = CliRunner()
    as_argument = runner.invoke(cli, [command, str(path)])
    as_option = runner.invoke(cli, [command, "--config", str(path)])
    assert as_argument.exit_code == as_option.exit_code == 0, as_argument.output
    assert as_argument.output == as_option.output
    other = tmp_path / "other.yml"
    twice = runner.invoke(cli, [command, str(path), "--config", str(other)])
    assert twice.exit_code == 2
    assert "given twice" in twice.output


def test_once_with_an_unknown_runner_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(CONFIG)
    done = CliRunner().invoke(cli, ["run", "--once", "nobody", "--config", str(path)])
    assert done.exit_code == 2
    assert "--once: no runner 'nobody' (runners: r)" in done.output


def test_a_bad_config_is_exit_2_in_every_command_that_reads_one(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("runners: [{id: r}]\n")
    runner = CliRunner()
    for args in (["validate", str(path)], ["run", str(path)], ["status", str(path)]):
        done = runner.invoke(cli, args)
        assert done.exit_code == 2, (args, done.output)
