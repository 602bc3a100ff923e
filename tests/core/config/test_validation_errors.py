"""Every problem in a config is reported at once, each with file, line, column and config path.

Line and column numbers below are counted by hand from the config text: they are what an
operator's editor shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from open_ticket_ai.base import ExpressionPipe, HttpRequestPipe
from open_ticket_ai.cli.main import cli
from open_ticket_ai.core.config import parse_config
from open_ticket_ai.core.factory import CompiledConfig, build
from open_ticket_ai.errors import ConfigError, Problem


def problems(text: str, file: str = "config.yml") -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        build(parse_config(text, file))
    return list(info.value.problems)


def messages(text: str) -> list[str]:
    return [str(p) for p in problems(text)]


def loads(text: str) -> CompiledConfig:
    return build(parse_config(text))


MANY_PROBLEMS = """\
orchestrator:
  runners:
    - id: fetcher
      on:
        - id: every_minute
          params:
            milliseconds: 60000
      run:
        id: fetch
        use: ExpressionPipe
        params:
          expresion: 1
    - id: checker
      on:
        - id: too_fast
          params: {milliseconds: 0}
      run:
        id: check
        use: CompositPipe
    - id: fetcher
      on: [ghost]
      run:
        id: again
        use: IntervalTrigger
"""

MANY_EXPECTED = [
    "config.yml:12:11 orchestrator.runners[0].run.params.expresion: "
    "unknown key 'expresion'; did you mean 'expression'?",
    "config.yml:12:11 orchestrator.runners[0].run.params.expression: is required",
    "config.yml:16:34 orchestrator.runners[1].on[0].params.milliseconds: "
    "must be greater than 0 (got 0)",
    "config.yml:19:14 orchestrator.runners[1].run.use: "
    "unknown component 'CompositPipe'; did you mean 'CompositePipe'?",
    "config.yml:20:11 orchestrator.runners[2].id: duplicate runner id 'fetcher' (also runners[0])",
    "config.yml:21:12 orchestrator.runners[2].on[0].id: trigger 'ghost' is listed by id but "
    "defined nowhere; give it 'use' and 'params' here or under another runner",
    "config.yml:24:14 orchestrator.runners[2].run.use: 'IntervalTrigger' is a trigger, not a pipe",
]


def test_every_problem_is_reported_in_file_order() -> None:
    assert messages(MANY_PROBLEMS) == MANY_EXPECTED


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        build(parse_config(MANY_PROBLEMS))
    assert str(info.value) == "\n".join(
        ["7 problems in config", *(f"  {line}" for line in MANY_EXPECTED)]
    )


def test_problems_name_the_file_they_are_in() -> None:
    found = problems(MANY_PROBLEMS, "/etc/otai/prod.yml")
    assert {p.file for p in found} == {"/etc/otai/prod.yml"}
    assert str(found[2]).startswith("/etc/otai/prod.yml:16:34 orchestrator.runners[1].on[0]")


def test_validate_exits_2_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(MANY_PROBLEMS, encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "7 problems in config"
    assert [line.strip() for line in lines[1:]] == [
        line.replace("config.yml", str(path), 1) for line in MANY_EXPECTED
    ]


# -- paths as written, in each root form -------------------------------------------------------


def test_a_bare_runners_list_reports_paths_from_runners() -> None:
    text = "runners:\n  - id: r\n    run:\n      id: p\n      use: Nope\n"
    (problem,) = problems(text)
    assert (problem.path, problem.line, problem.column) == ("runners[0].run.use", 5, 12)


def test_the_wrapped_form_reports_paths_from_open_ticket_ai() -> None:
    text = """\
open_ticket_ai:
  orchestrator:
    runners:
      - id: r
        run:
          id: p
          use: Nope
"""
    (problem,) = problems(text)
    assert (problem.path, problem.line, problem.column) == (
        "open_ticket_ai.orchestrator.runners[0].run.use",
        7,
        16,
    )
    assert "unknown component 'Nope'" in problem.message


def test_the_wrapped_form_reports_structural_problems_from_open_ticket_ai() -> None:
    text = "open_ticket_ai:\n  orchestrator:\n    runners:\n      - id: r\n        rn: {id: p}\n"
    assert messages(text) == [
        "config.yml:4:9 open_ticket_ai.orchestrator.runners[0].run: is required",
        "config.yml:5:9 open_ticket_ai.orchestrator.runners[0].rn: "
        "unknown key 'rn'; did you mean 'run'?",
    ]


# -- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "orchestrater:\n  runners: []\n",
            "config.yml:1:1 orchestrater: unknown key 'orchestrater'; did you mean 'orchestrator'?",
        ),
        (
            "runners:\n  - id: r\n    run: {id: p, depend_on: [x]}\n",
            "config.yml:3:18 runners[0].run.depend_on: "
            "unknown key 'depend_on'; did you mean 'depends_on'?",
        ),
        (
            "runners:\n  - id: r\n    on: [{id: t, parms: {seconds: 1}}]\n    run: {id: p}\n",
            "config.yml:3:18 runners[0].on[0].parms: unknown key 'parms'; did you mean 'params'?",
        ),
        (
            "runners:\n  - id: r\n    run: {id: p, retry: {attempt: 2}}\n",
            "config.yml:3:26 runners[0].run.retry.attempt: "
            "unknown key 'attempt'; did you mean 'attempts'?",
        ),
        (
            "runners:\n  - id: r\n    colour: blue\n    run: {id: p}\n",
            "config.yml:3:5 runners[0].colour: unknown key 'colour' "
            "(known keys: id, on, run, overlap, timeout, deadline, starting_deadline)",
        ),
        (
            "runners:\n  - id: r\n    on: [{id: t, params: {secnds: 1, minutes: 1}}]\n"
            "    run: {id: p}\n",
            "config.yml:3:27 runners[0].on[0].params.secnds: "
            "unknown key 'secnds'; did you mean 'seconds'?",
        ),
    ],
)
def test_an_unknown_key_is_an_error_with_a_hint(text: str, expected: str) -> None:
    assert expected in messages(text)


def test_a_trigger_with_a_misspelt_key_is_not_taken_for_a_reference() -> None:
    text = "runners:\n  - id: r\n    on: [{id: t, parms: {seconds: 1}}]\n    run: {id: p}\n"
    assert messages(text) == [
        "config.yml:3:18 runners[0].on[0].parms: unknown key 'parms'; did you mean 'params'?"
    ]


def test_a_misspelt_required_key_is_also_missing() -> None:
    assert messages("runners:\n  - id: r\n    ru: {id: p}\n") == [
        "config.yml:2:5 runners[0].run: is required",
        "config.yml:3:5 runners[0].ru: unknown key 'ru'; did you mean 'run'?",
    ]


# -- YAML itself -------------------------------------------------------------------------------


def test_a_yaml_syntax_error_gives_the_line() -> None:
    text = "runners:\n  - id: a\n     run: {id: p}\n"
    (problem,) = problems(text)
    assert problem.message.startswith("YAML syntax error:")
    assert "mapping values are not allowed" in problem.message
    assert (problem.line, problem.column) == (3, 9)


def test_an_unclosed_bracket_gives_the_line() -> None:
    text = "runners:\n  - id: a\n    on: [every_minute\n    run: {id: p}\n"
    (problem,) = problems(text)
    assert problem.message.startswith("YAML syntax error:")
    assert problem.line == 4


def test_a_tab_gives_the_line() -> None:
    (problem,) = problems("runners:\n\t- id: a\n")
    assert "YAML syntax error" in problem.message
    assert "'\\t'" in problem.message
    assert problem.line == 2


def test_a_control_character_gives_the_line() -> None:
    (problem,) = problems("runners:\n  - id: a\x07b\n")
    assert problem.message == "YAML error: character #x0007 is not allowed"
    assert (problem.line, problem.column) == (2, 10)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("2021-02-30", "day is out of range"), ("!!int twelve", "invalid literal for int()")],
)
def test_a_value_yaml_cannot_read_gives_the_line(value: str, reason: str) -> None:
    (problem,) = problems(f"runners:\n  - id: {value}\n    run: {{id: p}}\n")
    assert (problem.path, problem.line, problem.column) == ("runners[0].id", 2, 9)
    assert reason in problem.message


def test_an_alias_inside_itself_is_an_error() -> None:
    (problem,) = problems("runners: &r\n  - *r\n")
    assert problem.message == "an alias refers to a value that contains it"
    assert (problem.path, problem.line) == ("runners[0]", 1)


def test_aliases_that_expand_without_end_are_an_error() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    (problem,) = problems("\n".join(lines) + "\n")
    assert "expand to more than 100000 values" in problem.message


def test_nesting_too_deep_is_an_error() -> None:
    (problem,) = problems("runners: " + "[" * 150 + "]" * 150 + "\n")
    assert "nested more than 100 levels deep" in problem.message


def test_duplicate_yaml_keys_are_errors_reported_with_the_rest() -> None:
    text = """\
runners:
  - id: a
    run: {id: p, use: ExpressionPipe, params: {expression: 1}}
    id: b
  - id: c
    run: {id: q, use: ExpresionPipe}
"""
    assert messages(text) == [
        "config.yml:4:5 runners[0].id: duplicate key 'id' (first at line 2)",
        "config.yml:6:23 runners[1].run.use: "
        "unknown component 'ExpresionPipe'; did you mean 'ExpressionPipe'?",
    ]


def test_merge_keys_override_without_being_duplicates() -> None:
    text = """\
runners:
  - id: r
    run:
      id: main
      steps:
        - &step {id: a, use: ExpressionPipe, params: {expression: 1}}
        - <<: *step
          id: b
"""
    steps = loads(text).runners[0].pipeline.steps
    assert [(s.id, s.pipe_class) for s in steps] == [("a", ExpressionPipe), ("b", ExpressionPipe)]


# -- ids and dependencies ----------------------------------------------------------------------

STEPS = """\
runners:
  - id: r
    run:
      id: main
      steps:
        - id: a
          use: ExpressionPipe
          params: {{expression: 1}}
          depends_on: {a_depends}
        - id: b
          use: ExpressionPipe
          params: {{expression: 2}}
          depends_on: {b_depends}
"""


def steps_config(a_depends: str = "[]", b_depends: str = "[]") -> str:
    return STEPS.format(a_depends=a_depends, b_depends=b_depends)


def test_steps_may_depend_on_earlier_steps() -> None:
    pipeline = loads(steps_config(b_depends="a")).runners[0].pipeline
    assert pipeline.steps[1].depends_on == ("a",)


def test_depends_on_an_unknown_step_is_an_error() -> None:
    assert messages(steps_config(a_depends="nowhere")) == [
        "config.yml:9:23 runners[0].run.steps[0].depends_on[0]: "
        "depends_on names unknown step 'nowhere'"
    ]


def test_depends_on_a_later_step_is_an_error() -> None:
    assert messages(steps_config(a_depends="[b]")) == [
        "config.yml:9:24 runners[0].run.steps[0].depends_on[0]: depends_on names step 'b', "
        "which has not run yet at this point; a step can only depend on steps that finish "
        "before it starts"
    ]


def test_depends_on_the_enclosing_pipe_is_an_error() -> None:
    (problem,) = problems(steps_config(b_depends="[a, main]"))
    assert (problem.path, problem.line, problem.column) == (
        "runners[0].run.steps[1].depends_on[1]",
        13,
        27,
    )
    assert "'main', which has not run yet" in problem.message


def test_a_dependency_cycle_is_reported_once() -> None:
    assert messages(steps_config(a_depends="[b]", b_depends="[a]")) == [
        "config.yml:9:24 runners[0].run.steps[0].depends_on[0]: dependency cycle: a -> b -> a"
    ]


def test_a_step_depending_on_itself_is_a_cycle() -> None:
    assert messages(steps_config(b_depends="[b]")) == [
        "config.yml:13:24 runners[0].run.steps[1].depends_on[0]: dependency cycle: b -> b"
    ]


def test_a_nested_step_may_depend_on_an_earlier_outer_step() -> None:
    text = """\
runners:
  - id: r
    run:
      id: main
      steps:
        - {id: first, use: ExpressionPipe, params: {expression: 1}}
        - id: group
          steps:
            - {id: inner, use: ExpressionPipe, params: {expression: 1}, depends_on: first}
"""
    assert loads(text).pipe_count == 4


def test_duplicate_step_ids_are_errors() -> None:
    text = """\
runners:
  - id: r
    run:
      id: main
      steps:
        - {id: fetch, use: ExpressionPipe, params: {expression: 1}}
        - {id: fetch, use: ExpressionPipe, params: {expression: 2}}
        - {id: main, use: ExpressionPipe, params: {expression: 3}}
"""
    assert messages(text) == [
        "config.yml:7:16 runners[0].run.steps[1].id: duplicate pipe id 'fetch' in this runner "
        "(first at runners[0].run.steps[0]); results are kept by id",
        "config.yml:8:16 runners[0].run.steps[2].id: duplicate pipe id 'main' in this runner "
        "(first at runners[0].run); results are kept by id",
    ]


def test_the_same_step_id_in_two_runners_is_fine() -> None:
    text = """\
runners:
  - {id: a, run: {id: p, use: ExpressionPipe, params: {expression: 1}}}
  - {id: b, run: {id: p, use: ExpressionPipe, params: {expression: 1}}}
"""
    assert [r.pipeline.id for r in loads(text).runners] == ["p", "p"]


def test_duplicate_runner_ids_are_errors() -> None:
    text = """\
runners:
  - {id: a, run: {id: p, use: ExpressionPipe, params: {expression: 1}}}
  - {id: a, run: {id: q, use: ExpressionPipe, params: {expression: 1}}}
  - {id: a, run: {id: r, use: ExpressionPipe, params: {expression: 1}}}
"""
    assert messages(text) == [
        "config.yml:3:10 runners[1].id: duplicate runner id 'a' (also runners[0])",
        "config.yml:4:10 runners[2].id: duplicate runner id 'a' (also runners[0])",
    ]


# -- components and their params ---------------------------------------------------------------


def test_a_misspelt_class_in_a_module_gets_a_hint() -> None:
    (problem,) = problems(
        "runners:\n  - id: r\n    run: {id: p, use: open_ticket_ai.base:CompositPipe}\n"
    )
    assert problem.path == "runners[0].run.use"
    assert problem.message == (
        "module 'open_ticket_ai.base' has no 'CompositPipe'; did you mean 'CompositePipe'?"
    )


def test_a_pipe_used_as_a_trigger_is_an_error() -> None:
    text = "runners:\n  - id: r\n    on: [{id: t, use: ExpressionPipe}]\n    run: {id: p}\n"
    assert messages(text) == [
        "config.yml:3:23 runners[0].on[0].use: 'ExpressionPipe' is a pipe, not a trigger"
    ]


def test_steps_on_a_pipe_that_does_not_run_them_are_an_error() -> None:
    text = """\
runners:
  - id: r
    run:
      id: p
      use: ExpressionPipe
      params: {expression: 1}
      steps:
        - {id: s, use: ExpressionPipe, params: {expression: 1}}
"""
    assert messages(text) == [
        "config.yml:8:9 runners[0].run.steps: "
        "'ExpressionPipe' does not run nested steps; use CompositePipe for 'steps'"
    ]


def test_a_bad_pipe_setting_is_an_error() -> None:
    text = "runners:\n  - id: r\n    run: {id: p, timeout: 0, retry: {attempts: 0, delay: soon}}\n"
    assert messages(text) == [
        "config.yml:3:27 runners[0].run.timeout: must be greater than 0 (got 0)",
        "config.yml:3:48 runners[0].run.retry.attempts: must be greater than or equal to 1 (got 0)",
        "config.yml:3:58 runners[0].run.retry.delay: invalid duration 'soon': "
        "use seconds, '500ms', '30s', '5m', '1h30m' or 'PT5M'",
    ]


def test_a_missing_required_param_is_an_error() -> None:
    text = "runners:\n  - id: r\n    run: {id: p, use: ExpressionPipe}\n"
    (problem,) = problems(text)
    assert (problem.path, problem.message) == ("runners[0].run.params.expression", "is required")


def test_a_bad_literal_param_of_a_built_in_pipe_is_an_error() -> None:
    text = """\
runners:
  - id: r
    run:
      id: call
      use: HttpRequestPipe
      params:
        url: https://example.com
        method: FETCH
"""
    (problem,) = problems(text)
    assert (problem.path, problem.line, problem.column) == ("runners[0].run.params.method", 8, 17)
    assert "(got 'FETCH')" in problem.message


def test_a_trigger_defined_twice_with_other_settings_is_an_error() -> None:
    text = """\
runners:
  - id: a
    on: [{id: tick, params: {seconds: 5}}]
    run: {id: p, use: ExpressionPipe, params: {expression: 1}}
  - id: b
    on: [{id: tick, params: {seconds: 10}}]
    run: {id: q, use: ExpressionPipe, params: {expression: 1}}
"""
    assert messages(text) == [
        "config.yml:6:10 runners[1].on[0]: trigger 'tick' is defined again with other settings "
        "(first at runners[0].on[0]); list it by id alone to share it, or give it another id"
    ]


def test_a_trigger_defined_twice_alike_is_shared() -> None:
    text = """\
runners:
  - id: a
    on: [{id: tick, params: {seconds: 5}}]
    run: {id: p, use: ExpressionPipe, params: {expression: 1}}
  - id: b
    on: [{id: tick, params: {seconds: 5}}]
    run: {id: q, use: ExpressionPipe, params: {expression: 1}}
"""
    compiled = loads(text)
    assert list(compiled.triggers) == ["tick"]
    assert [r.triggers for r in compiled.runners] == [("tick",), ("tick",)]


def test_a_trigger_listed_by_id_may_be_defined_under_a_later_runner() -> None:
    text = """\
runners:
  - id: a
    on: [tick]
    run: {id: p, use: ExpressionPipe, params: {expression: 1}}
  - id: b
    on: [{id: tick, params: {seconds: 5}}]
    run: {id: q, use: ExpressionPipe, params: {expression: 1}}
"""
    compiled = loads(text)
    assert compiled.triggers["tick"].interval == 5
    assert compiled.runners[0].triggers == ("tick",)


def test_a_trigger_listed_by_id_and_defined_nowhere_is_an_error() -> None:
    text = "runners:\n  - id: a\n    on: tick\n    run: {id: p}\n"
    assert messages(text) == [
        "config.yml:3:9 runners[0].on[0].id: trigger 'tick' is listed by id but defined "
        "nowhere; give it 'use' and 'params' here or under another runner"
    ]


def test_trigger_params_are_rendered_with_env_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTAI_TEST_SECONDS", "7")
    text = """\
runners:
  - id: a
    on: [{id: tick, params: {seconds: "{{ env.OTAI_TEST_SECONDS }}"}}]
    run: {id: p, use: ExpressionPipe, params: {expression: 1}}
"""
    assert loads(text).triggers["tick"].interval == 7


def test_a_service_must_be_a_service() -> None:
    text = """\
services:
  - {id: tickets, use: ExpressionPipe, params: {expression: 1}}
orchestrator: {runners: []}
"""
    assert messages(text) == [
        "config.yml:2:24 services[0].use: 'ExpressionPipe' is a pipe, not a service"
    ]


# -- templates ---------------------------------------------------------------------------------


def test_template_syntax_errors_are_reported_with_their_paths() -> None:
    text = """\
runners:
  - id: r
    run:
      id: call
      use: HttpRequestPipe
      if: "{{ ticket.id > }}"
      params:
        url: "https://example.com/{{ ticket.id"
        headers:
          X-Trace: "{% if trace %}on"
        json: {items: [1, "{{ 2 + }}"]}
"""
    found = problems(text)
    assert [(p.path, p.line, p.column) for p in found] == [
        ("runners[0].run.if", 6, 11),
        ("runners[0].run.params.url", 8, 14),
        ("runners[0].run.params.headers.X-Trace", 10, 20),
        ("runners[0].run.params.json.items[1]", 11, 27),
    ]
    assert all(p.message.startswith("template syntax error: ") for p in found)
    assert found[1].message.endswith(" in 'https://example.com/{{ ticket.id'")


def test_params_holding_templates_are_not_validated_at_load() -> None:
    text = """\
runners:
  - id: r
    run:
      id: call
      use: HttpRequestPipe
      params:
        url: "{{ env.OTAI_BASE_URL }}/tickets"
        method: "{{ 'post' if trigger.payload else 'get' }}"
        timeout: "{{ parent.timeout }}"
"""
    spec = loads(text).runners[0].pipeline
    assert spec.pipe_class is HttpRequestPipe
    assert spec.static_params is None


def test_literal_params_beside_templates_are_still_validated() -> None:
    text = """\
runners:
  - id: r
    run:
      id: call
      use: HttpRequestPipe
      params: {url: "{{ env.BASE }}", timeout: soon, uri: "{{ 1 }}"}
"""
    assert messages(text) == [
        "config.yml:6:48 runners[0].run.params.timeout: invalid duration 'soon': "
        "use seconds, '500ms', '30s', '5m', '1h30m' or 'PT5M'",
        "config.yml:6:54 runners[0].run.params.uri: unknown key 'uri'; did you mean 'url'?",
    ]


def test_params_without_templates_are_validated_once_at_load() -> None:
    text = "runners:\n  - id: r\n    run: {id: p, use: ExpressionPipe, params: {expression: 42}}\n"
    spec = loads(text).runners[0].pipeline
    assert spec.static_params is not None
    assert spec.static_params.model_dump() == {"expression": 42}


# -- structural problems do not hide the others ------------------------------------------------


def test_a_runner_with_an_unknown_key_is_still_checked() -> None:
    text = """\
runners:
  - id: a
    run: {id: p, use: ExpressionPipe, params: {expression: 1}, timeot: 5}
  - id: a
    run: {id: q, use: CompositPipe}
"""
    assert messages(text) == [
        "config.yml:3:64 runners[0].run.timeot: unknown key 'timeot'; did you mean 'timeout'?",
        "config.yml:4:9 runners[1].id: duplicate runner id 'a' (also runners[0])",
        "config.yml:5:23 runners[1].run.use: "
        "unknown component 'CompositPipe'; did you mean 'CompositePipe'?",
    ]


def test_a_pipe_with_a_bad_optional_setting_is_still_checked() -> None:
    text = """\
runners:
  - id: a
    run:
      id: p
      use: HttpRequestPipe
      timeout: never
      params: {url: https://example.com, method: FETCH}
"""
    assert [p.path for p in problems(text)] == [
        "runners[0].run.timeout",
        "runners[0].run.params.method",
    ]


def test_a_broken_runner_does_not_hide_problems_in_the_others() -> None:
    text = """\
runners:
  - id: a
  - id: b
    run: {id: q, use: CompositPipe}
"""
    assert messages(text) == [
        "config.yml:2:5 runners[0].run: is required",
        "config.yml:4:23 runners[1].run.use: "
        "unknown component 'CompositPipe'; did you mean 'CompositePipe'?",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "runners: 5\n",
        "runners: [5]\n",
        "runners: [{id: a, run: 5}]\n",
        "runners: [{id: a, run: {id: p, steps: {a: 1}}}]\n",
        "orchestrator: [1]\n",
        "open_ticket_ai: [1]\n",
        "plugins: 5\norchestrator: {}\n",
    ],
)
def test_wrong_shapes_are_config_errors(text: str) -> None:
    found = problems(text)
    assert found
    assert all(p.line is not None for p in found)
