"""Finding and loading the config file: where it is looked for, the three root forms, the
configs of the orchestrator's original description, and ``otai validate`` / ``otai schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from open_ticket_ai.base import CompositePipe, ExpressionPipe, IntervalTrigger
from open_ticket_ai.cli.main import cli
from open_ticket_ai.core.config import AppConfig, find_config, load_config, parse_config
from open_ticket_ai.core.config.loader import ENV_VAR
from open_ticket_ai.core.factory import build
from open_ticket_ai.errors import ConfigError

RUNNERS = """\
  - id: fetcher
    on:
      - id: every_minute
        params: {seconds: 60}
    run:
      id: fetch
      steps:
        - id: one
          use: ExpressionPipe
          params: {expression: 1}
  - id: once
    run: {id: start, use: ExpressionPipe, params: {expression: "{{ 2 }}"}}
"""


def indented(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line else line for line in text.splitlines(True))


BARE = "runners:\n" + RUNNERS
ORCHESTRATOR = "plugins: []\norchestrator:\n  max_concurrent_runs: 2\n  runners:\n" + indented(
    RUNNERS, 2
)
WRAPPED = (
    "open_ticket_ai:\n  plugins: []\n  services: []\n  orchestrator:\n    runners:\n"
    + indented(RUNNERS, 4)
)


@pytest.fixture(autouse=True)
def no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- where the config is found -----------------------------------------------------------------


def test_find_config_takes_the_argument_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "/from/env.yml")
    assert find_config("/from/argument.yml") == Path("/from/argument.yml")


def test_find_config_takes_the_env_var_without_an_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VAR, "/from/env.yml")
    assert find_config() == Path("/from/env.yml")
    assert find_config("") == Path("/from/env.yml")


def test_find_config_defaults_to_config_yml_here() -> None:
    assert find_config() == Path("config.yml")


def test_load_config_reads_the_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "env.yml", "runners: []\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.yml"))
    path = write(tmp_path / "mine.yml", BARE)
    loaded = load_config(path)
    assert loaded.source.file == str(path)
    assert [r.id for r in loaded.config.orchestrator.runners] == ["fetcher", "once"]


def test_load_config_reads_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config.yml", "runners: []\n")
    path = write(tmp_path / "from_env.yml", BARE)
    monkeypatch.setenv(ENV_VAR, str(path))
    loaded = load_config()
    assert loaded.source.file == str(path)
    assert len(loaded.config.orchestrator.runners) == 2


def test_load_config_reads_config_yml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config.yml", ORCHESTRATOR)
    loaded = load_config()
    assert loaded.source.file == "config.yml"
    assert len(loaded.config.orchestrator.runners) == 2


def test_a_missing_default_file_says_how_to_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config()
    (problem,) = info.value.problems
    assert problem.file == "config.yml"
    assert problem.message == f"config file not found (give a path, or set {ENV_VAR})"


def test_a_missing_named_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yml")
    assert str(info.value.problems[0]) == f"{tmp_path / 'nope.yml'}: config file not found"


def test_a_directory_cannot_be_read_as_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_a_file_that_is_not_utf8_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("runners: []  # d\xe9j\xe0 vu\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path)


# -- the three root forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prefix"),
    [(BARE, ("<bare>",)), (ORCHESTRATOR, ()), (WRAPPED, ("open_ticket_ai",))],
    ids=["bare", "orchestrator", "wrapped"],
)
def test_every_root_form_loads_the_same_runners(text: str, prefix: tuple[str, ...]) -> None:
    loaded = parse_config(text)
    assert loaded.problems == ()
    assert loaded.prefix == prefix
    assert loaded.config.orchestrator.runners == parse_config(BARE).config.orchestrator.runners
    compiled = build(loaded)
    assert [r.id for r in compiled.runners] == ["fetcher", "once"]
    assert [r.triggers for r in compiled.runners] == [("every_minute",), ()]
    assert isinstance(compiled.triggers["every_minute"], IntervalTrigger)
    assert compiled.triggers["every_minute"].interval == 60
    assert compiled.pipe_count == 3


def test_the_orchestrator_form_keeps_the_keys_beside_runners() -> None:
    assert parse_config(ORCHESTRATOR).config.orchestrator.max_concurrent_runs == 2


def test_a_bare_runners_list_may_carry_orchestrator_settings() -> None:
    loaded = parse_config("max_concurrent_runs: 3\nshutdown_timeout: 1m\n" + BARE)
    assert loaded.problems == ()
    assert loaded.config.orchestrator.max_concurrent_runs == 3
    assert loaded.config.orchestrator.shutdown_timeout == 60.0


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (BARE, ("runners", 1, "run")),
        (ORCHESTRATOR, ("orchestrator", "runners", 1, "run")),
        (WRAPPED, ("open_ticket_ai", "orchestrator", "runners", 1, "run")),
    ],
    ids=["bare", "orchestrator", "wrapped"],
)
def test_paths_are_translated_to_the_file_form(text: str, path: tuple[Any, ...]) -> None:
    loaded = parse_config(text)
    assert loaded.file_path(("orchestrator", "runners", 1, "run")) == path


def test_where_names_file_line_and_path() -> None:
    # `run:` of the second runner is on line 16 of the orchestrator form.
    loaded = parse_config(ORCHESTRATOR, "my.yml")
    assert ORCHESTRATOR.splitlines()[15].strip().startswith("run: {id: start")
    assert loaded.where(("orchestrator", "runners", 1, "run")) == (
        "my.yml:16 orchestrator.runners[1].run"
    )


def test_an_empty_wrapper_is_an_empty_config() -> None:
    loaded = parse_config("open_ticket_ai:\n")
    assert loaded.problems == ()
    assert loaded.config == AppConfig()
    assert build(loaded).runners == ()


def test_keys_beside_the_wrapper_are_errors() -> None:
    loaded = parse_config("open_ticket_ai:\n  plugins: []\norchestrator: {}\n")
    (problem,) = loaded.problems
    assert (
        str(problem)
        == "config.yml:3:1 orchestrator: unknown key 'orchestrator' beside 'open_ticket_ai'"
    )


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_root_that_is_not_a_mapping_is_an_error(text: str) -> None:
    (problem,) = parse_config(text).problems
    assert "must be a mapping with 'open_ticket_ai', 'orchestrator' or 'runners'" in str(problem)
    assert (problem.line, problem.column) == (1, 1)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_is_an_error(text: str) -> None:
    with pytest.raises(ConfigError, match="the config file is empty"):
        parse_config(text)


def test_keys_are_taken_as_written() -> None:
    # YAML 1.1 reads a bare `on` as true; the runner's `on:` must stay `on`.
    loaded = parse_config("runners:\n  - id: r\n    on: t\n    run: {id: p}\n")
    assert loaded.problems == ()
    assert [t.id for t in loaded.config.orchestrator.runners[0].on] == ["t"]


@pytest.mark.parametrize(
    ("written", "ids"),
    [
        ("on: t1", ["t1"]),
        ("on: [t1, t2]", ["t1", "t2"]),
        ("on: {id: t1, params: {seconds: 1}}", ["t1"]),
        ("on:", []),
        ("on: []", []),
    ],
)
def test_triggers_can_be_written_in_short_forms(written: str, ids: list[str]) -> None:
    loaded = parse_config(f"runners:\n  - id: r\n    {written}\n    run: {{id: p}}\n")
    assert loaded.problems == ()
    assert [t.id for t in loaded.config.orchestrator.runners[0].on] == ids


def test_a_trigger_without_use_is_an_interval_trigger() -> None:
    compiled = build(parse_config(BARE))
    assert type(compiled.triggers["every_minute"]) is IntervalTrigger


def test_a_pipe_without_use_is_a_composite() -> None:
    compiled = build(parse_config(BARE))
    assert compiled.runners[0].pipeline.pipe_class is CompositePipe
    assert compiled.runners[0].pipeline.steps[0].pipe_class is ExpressionPipe


def test_a_runner_without_triggers_runs_once() -> None:
    compiled = build(parse_config(BARE))
    assert [r.one_time for r in compiled.runners] == [False, True]


# -- the configs of the orchestrator's original description ------------------------------------

SEED_CONFIGS = {
    "time-based": """\
orchestrator:
  runners:
    - id: periodic_classifier
      on:
        - id: "every_5_minutes"
          use: "open_ticket_ai.base.interval_trigger:IntervalTrigger"
          params:
            milliseconds: 300000
      run:
        id: ticket_classifier
        use: open_ticket_ai.base:CompositePipe
        steps: [{id: classify, use: ExpressionPipe, params: {expression: 1}}]
""",
    "one-time": """\
orchestrator:
  runners:
    - id: startup_task
      run:  # No "on" field
        id: initialization
        use: ExpressionPipe
        params: {expression: 1}
""",
    "multiple triggers": """\
orchestrator:
  runners:
    - id: multi_trigger
      on:
        - id: "hourly"
          use: "open_ticket_ai.base.interval_trigger:IntervalTrigger"
          params:
            milliseconds: 3600000
        - id: "daily"
          use: "open_ticket_ai.base.interval_trigger:IntervalTrigger"
          params:
            milliseconds: 86400000
      run:
        id: maintenance
        use: ExpressionPipe
        params: {expression: 1}
""",
    "trigger definition": """\
orchestrator:
  runners:
    - id: "unique_runner_id"
      on:  # Optional triggers
        - id: "trigger_id"
          use: "open_ticket_ai.base.interval_trigger:IntervalTrigger"
          params:
            milliseconds: 60000  # 1 minute
      run:  # Required pipeline
        id: "pipeline_id"
        use: "open_ticket_ai.base.pipes.expression_pipe:ExpressionPipe"
        params: {expression: 1}
""",
    "periodic processing": """\
runners:
  - id: ticket_processor
    on:
      - id: "every_10_minutes"
        use: "open_ticket_ai.base.interval_trigger:IntervalTrigger"
        params:
          milliseconds: 600000
    run:
      id: process_tickets
      use: CompositePipe
      steps: [{id: process, use: ExpressionPipe, params: {expression: 1}}]
""",
    "startup initialization": """\
runners:
  - id: init_cache
    run:  # No triggers = one-time
      id: cache_warmup
      use: ExpressionPipe
      params: {expression: 1}
""",
    "multiple schedules": """\
runners:
  - id: quick_check
    on:
      - id: "every_minute"
        params:
          milliseconds: 60000
    run: {id: check, use: ExpressionPipe, params: {expression: 1}}

  - id: deep_scan
    on:
      - id: "every_hour"
        params:
          milliseconds: 3600000
    run: {id: scan, use: ExpressionPipe, params: {expression: 1}}
""",
}


@pytest.mark.parametrize("name", list(SEED_CONFIGS))
def test_the_seed_configs_load(name: str) -> None:
    compiled = build(parse_config(SEED_CONFIGS[name]))
    assert compiled.runners
    for trigger in compiled.triggers.values():
        assert isinstance(trigger, IntervalTrigger)


def test_the_seed_intervals_are_in_milliseconds() -> None:
    compiled = build(parse_config(SEED_CONFIGS["multiple triggers"]))
    assert {k: t.interval for k, t in compiled.triggers.items()} == {
        "hourly": 3600.0,
        "daily": 86400.0,
    }


# -- otai validate / otai schema ---------------------------------------------------------------


def test_validate_prints_a_one_line_summary(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yml", WRAPPED)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok, 2 runners, 1 trigger, 3 pipes\n"


def test_validate_counts_in_the_singular(tmp_path: Path) -> None:
    path = write(tmp_path / "one.yml", SEED_CONFIGS["time-based"])
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok, 1 runner, 1 trigger, 2 pipes\n"


def test_validate_prefers_the_argument_to_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(write(tmp_path / "broken.yml", "runners: [\n")))
    path = write(tmp_path / "good.yml", BARE)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: ok")


def test_validate_finds_the_config_through_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "env.yml", SEED_CONFIGS["multiple schedules"])
    monkeypatch.setenv(ENV_VAR, str(path))
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok, 2 runners, 2 triggers, 2 pipes\n"


def test_validate_finds_config_yml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config.yml", BARE)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "config.yml: ok, 2 runners, 1 trigger, 3 pipes\n"


def test_validate_exits_2_when_there_is_no_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2
    assert "config.yml: config file not found" in result.stderr
    assert result.stdout == ""


def test_schema_is_json_describing_the_runners() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert "runners" in result.stdout
    definitions = schema["$defs"]
    assert "runners" in definitions["OrchestratorConfig"]["properties"]
    assert {"id", "on", "run", "overlap", "timeout"} <= set(
        definitions["RunnerDefinition"]["properties"]
    )
    assert "if" in definitions["PipeConfig"]["properties"]


def test_schema_refs_all_resolve() -> None:
    schema = json.loads(CliRunner().invoke(cli, ["schema"]).stdout)
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref
