"""Templates: the one sandboxed environment, native values, the context, and where errors point."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from typing import Any

import pytest

from open_ticket_ai import (
    ConfigError,
    Pipe,
    PipeContext,
    PipeError,
    PipeResult,
    TemplateError,
    build,
)
from open_ticket_ai import parse_config as parse
from open_ticket_ai.core.pipes.run import RunContext, TriggerRef, execute_pipe
from open_ticket_ai.core.templates import (
    CompiledTemplate,
    FailRequested,
    TemplateEngine,
    compile_tree,
    is_template,
    render_tree,
    truthy,
)

HERE = __name__


class OutsideDataPipe(Pipe):
    """Returns text that looks like templates, as a ticket or an HTTP response might."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success(
            {"subject": "{{ 7*7 }}", "value": "42", "listish": "[1, 2]", "flag": "True"}
        )


def config(steps: str, *, top: str = "") -> str:
    """A one-runner config whose pipeline (id ``main``) has ``steps`` (YAML, unindented)."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 8)
    return (
        f"{textwrap.dedent(top)}orchestrator:\n  runners:\n    - id: r\n      run:\n"
        f"        id: main\n        steps:\n{body}\n"
    )


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in config")


async def run_config(
    text: str, *, trigger: TriggerRef | None = None
) -> tuple[PipeResult, RunContext]:
    compiled = build(parse(text, "config.yml"))
    run = RunContext(runner="r", trigger=trigger, env=compiled.env)
    result = await execute_pipe(compiled.runners[0].pipeline, run)
    return result, run


def value(run: RunContext, step: str) -> Any:
    result = run.results[step]
    assert result.succeeded, result.message
    return result.data["value"]


# -- the engine on its own ------------------------------------------------------------------


@pytest.fixture
def engine() -> TemplateEngine:
    return TemplateEngine()


def render(engine: TemplateEngine, source: str, **context: Any) -> Any:
    return engine.compile(source, "config.yml:3 here").render(context)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 6*7 }}", 42),
        ("{{6*7}}", 42),
        ("{{- 6*7 -}}", 42),
        ("{{ [1, 'a'] }}", [1, "a"]),
        ("{{ {'a': 1} }}", {"a": 1}),
        ("{{ none }}", None),
        ("{{ 1 < 2 }}", True),
        ("{{ '42' }}", "42"),
        ("{{ '}}' }}", "}}"),
        ("{# a note #}{{ 6*7 }}", 42),
        ("{{ 6*7 }}{# a note #}", 42),
    ],
)
def test_a_single_expression_renders_to_the_native_value(
    engine: TemplateEngine, source: str, expected: Any
) -> None:
    rendered = render(engine, source)
    assert rendered == expected
    assert type(rendered) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x{{ 6*7 }}", "x42"),
        ("  {{ 6*7 }}", "  42"),
        ("{{ 6*7 }}\n", "42\n"),
        ("{{ 4 }}{{ 2 }}", "42"),
        ("{% if true %}42{% endif %}", "42"),
        ("{% raw %}{{ 6*7 }}{% endraw %}", "{{ 6*7 }}"),
        ("{# only a note #}", ""),
        (
            "{% set ns = namespace(n=0) %}{% for i in [1, 2] %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "3",
        ),
    ],
)
def test_any_other_template_renders_to_a_string(
    engine: TemplateEngine, source: str, expected: str
) -> None:
    assert render(engine, source) == expected


def test_native_values_are_not_literal_evaluated(engine: TemplateEngine) -> None:
    assert render(engine, "{{ x }}", x="42") == "42"
    assert render(engine, "{{ x }}", x="[1, 2]") == "[1, 2]"
    assert render(engine, "{{ x }}", x="True") == "True"
    items = [1, 2]
    assert render(engine, "{{ x }}", x=items) is items


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ x }}", True),
        ("a {% if x %}b{% endif %}", True),
        ("{# note #}", True),
        ("plain text", False),
        ("{ x }", False),
        ("", False),
        (42, False),
        (None, False),
        (["{{ x }}"], False),
    ],
)
def test_is_template(value: object, expected: bool) -> None:
    assert is_template(value) is expected


@pytest.mark.parametrize(
    "value", [False, "false", "False", " FALSE ", 0, 0.0, "", "0", "no", "off", "none", None, []]
)
def test_truthy_false_values(value: object) -> None:
    assert truthy(value) is False


@pytest.mark.parametrize("value", [True, "true", "yes", 1, -1, 0.5, "x", [0], "False!"])
def test_truthy_true_values(value: object) -> None:
    assert truthy(value) is True


def test_syntax_error_raises_template_error_naming_the_path(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError) as caught:
        engine.compile("{{ 6* }}", "config.yml:7 some.path")
    assert str(caught.value).startswith("config.yml:7 some.path: ")
    assert caught.value.path == "config.yml:7 some.path"
    assert "syntax" in caught.value.reason


def test_unknown_filter_is_a_compile_time_error(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="no_such_filter"):
        engine.compile("{{ 1 | no_such_filter }}", "p")


@pytest.mark.parametrize("source", ["{{ missing }}", "a {{ missing }}", "{{ missing.attr }}"])
def test_undefined_names_raise_naming_the_path(engine: TemplateEngine, source: str) -> None:
    template = engine.compile(source, "config.yml:9 the.path")
    with pytest.raises(TemplateError) as caught:
        template.render({})
    assert caught.value.path == "config.yml:9 the.path"
    assert "missing" in str(caught.value)


def test_undefined_attribute_of_a_known_value_raises(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="nope"):
        render(engine, "{{ d.nope }}", d={"yes": 1})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "text {{ ''.__class__.__mro__ }}",
        "{{ f.__globals__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
    ],
)
def test_the_sandbox_blocks_internals(engine: TemplateEngine, source: str) -> None:
    template = engine.compile(source, "config.yml:4 x.y")
    with pytest.raises(TemplateError) as caught:
        template.render({"f": render})
    assert caught.value.path == "config.yml:4 x.y"
    assert "unsafe" in str(caught.value) or "sandbox" in str(caught.value)


def test_templates_cannot_change_the_data_they_read(engine: TemplateEngine) -> None:
    data = {"items": [1, 2], "map": {"a": 1}}
    for source in ("{{ d['items'].append(3) }}", "{{ d['map'].update(b=2) }}", "{{ d.clear() }}"):
        with pytest.raises(TemplateError):
            render(engine, source, d=data)
    assert data == {"items": [1, 2], "map": {"a": 1}}


def test_sandbox_limits_huge_ranges(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match=r"(?i)range"):
        render(engine, "{{ range(10**9) | list }}")


def test_now_is_timezone_aware(engine: TemplateEngine) -> None:
    now = render(engine, "{{ now() }}")
    assert isinstance(now, datetime)
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_compile_tree_compiles_nested_templates_and_reports_them() -> None:
    engine = TemplateEngine()
    tree, found = compile_tree(
        engine,
        {"a": ["x", "{{ n + 1 }}"], "b": {"c": "n={{ n }}"}, "d": 3},
        ("params",),
        lambda loc: ".".join(map(str, loc)),
    )
    assert found is True
    assert isinstance(tree["a"][1], CompiledTemplate)
    assert tree["a"][1].path == "params.a.1"
    assert tree["a"][1].native is True
    assert tree["b"]["c"].native is False
    assert render_tree(tree, {"n": 1}) == {"a": ["x", 2], "b": {"c": "n=1"}, "d": 3}

    plain, found = compile_tree(engine, {"a": [1, "x"]}, (), str)
    assert found is False
    assert plain == {"a": [1, "x"]}


def test_render_errors_carry_the_location() -> None:
    tree, _ = compile_tree(
        TemplateEngine(),
        {"a": ["{{ missing }}", "{{ fail('stop') }}"]},
        ("params",),
        lambda loc: f"config.yml:1 {loc}",
    )
    with pytest.raises(TemplateError) as caught:
        tree["a"][0].render({})
    assert caught.value.loc == ("params", "a", 0)
    with pytest.raises(FailRequested) as failed:
        tree["a"][1].render({})
    assert failed.value.loc == ("params", "a", 1)
    assert str(failed.value) == "stop"


def test_compile_tree_syntax_error_carries_the_location() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_tree(TemplateEngine(), {"a": [1, "{{ oops( }}"]}, ("params",), str)
    assert caught.value.loc == ("params", "a", 1)


# -- templates in a config ------------------------------------------------------------------


async def test_native_values_flow_between_steps() -> None:
    _, run = await run_config(
        config(
            """
            - id: fetch
              use: ExpressionPipe
              params:
                expression: "{{ [1, 2, 3] }}"
            - id: count
              use: ExpressionPipe
              params:
                expression: "{{ pipe_result('fetch') | length }}"
            - id: again
              use: ExpressionPipe
              params:
                expression: "{{ pipe_result('fetch') }}"
            - id: answer
              use: ExpressionPipe
              params:
                expression: "{{ 6*7 }}"
            - id: text
              use: ExpressionPipe
              params:
                expression: "answer: {{ pipe_result('answer') }}"
            """
        )
    )
    assert value(run, "fetch") == [1, 2, 3]
    assert value(run, "count") == 3
    assert value(run, "again") == [1, 2, 3]
    assert type(value(run, "answer")) is int
    assert value(run, "answer") == 42
    assert value(run, "text") == "answer: 42"


async def test_pipe_result_reads_other_keys_and_defaults() -> None:
    _, run = await run_config(
        config(
            f"""
            - id: outside
              use: "{HERE}:OutsideDataPipe"
            - id: key
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('outside', 'flag') }}}}"
            - id: missing_key
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('outside', 'nope', default=7) }}}}"
            - id: missing_step
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('nobody', default='d') }}}}"
            """
        )
    )
    assert value(run, "key") == "True"
    assert value(run, "missing_key") == 7
    assert value(run, "missing_step") == "d"


async def test_pipe_result_of_a_missing_key_fails_the_step_naming_the_keys() -> None:
    text = config(
        f"""
        - id: outside
          use: "{HERE}:OutsideDataPipe"
        - id: reader
          use: ExpressionPipe
          params:
            expression: "{{{{ pipe_result('outside', 'body') }}}}"
        """
    )
    result, run = await run_config(text)
    assert result.failed
    message = run.results["reader"].message
    assert run.results["reader"].failed
    line = line_of(text, "pipe_result('outside', 'body')")
    assert f"config.yml:{line} orchestrator.runners[0].run.steps[1].params.expression" in message
    assert "'body'" in message
    assert "'subject'" in message


async def test_pipe_result_of_a_step_that_has_not_run_fails() -> None:
    # A literal id is checked at load; a computed one can only fail at run time.
    _, run = await run_config(
        config(
            """
            - id: early
              use: ExpressionPipe
              params:
                expression: "{{ pipe_result('la' ~ 'te') }}"
            """
        )
    )
    assert run.results["early"].failed
    assert "'late'" in run.results["early"].message


async def test_values_from_outside_are_never_rendered_again() -> None:
    _, run = await run_config(
        config(
            f"""
            - id: ticket
              use: "{HERE}:OutsideDataPipe"
            - id: native
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('ticket', 'subject') }}}}"
            - id: embedded
              use: ExpressionPipe
              params:
                expression: "Re: {{{{ pipe_result('ticket', 'subject') }}}}"
            - id: twice
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('native') }}}}"
            """
        )
    )
    assert value(run, "native") == "{{ 7*7 }}"
    assert value(run, "embedded") == "Re: {{ 7*7 }}"
    assert value(run, "twice") == "{{ 7*7 }}"


async def test_strings_from_steps_stay_strings() -> None:
    _, run = await run_config(
        config(
            f"""
            - id: a
              use: "{HERE}:OutsideDataPipe"
            - id: number
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('a') }}}}"
            - id: listish
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('a', 'listish') }}}}"
            - id: flag
              use: ExpressionPipe
              params:
                expression: "{{{{ pipe_result('a', 'flag') }}}}"
            """
        )
    )
    assert value(run, "number") == "42"
    assert isinstance(value(run, "number"), str)
    assert value(run, "listish") == "[1, 2]"
    assert value(run, "flag") == "True"


async def test_has_failed_and_has_succeeded() -> None:
    _, run = await run_config(
        config(
            """
            - id: good
              use: ExpressionPipe
              params:
                expression: 1
            - id: bad
              use: ExpressionPipe
              params:
                expression: "{{ fail('no') }}"
            - id: report
              if: "{{ has_failed('bad') }}"
              use: ExpressionPipe
              params:
                expression: >-
                  {{ [has_succeeded('good'), has_failed('good'), has_succeeded('bad'),
                  has_failed('bad'), has_failed('nev' ~ 'er'), has_succeeded('nev' ~ 'er')] }}
            """
        )
    )
    assert value(run, "report") == [True, False, False, True, False, False]


async def test_parent_and_params_are_the_enclosing_pipes_rendered_params() -> None:
    _, run = await run_config(
        config(
            """
            - id: first
              use: ExpressionPipe
              params:
                expression: 40
            - id: group
              params:
                queue: support
                limit: "{{ pipe_result('first') + 2 }}"
              steps:
                - id: from_parent
                  use: ExpressionPipe
                  params:
                    expression: "{{ parent.queue }}/{{ parent.limit }}"
                - id: from_params
                  use: ExpressionPipe
                  params:
                    expression: "{{ params.limit }}"
                - id: inner
                  params:
                    queue: "{{ parent.queue }}-inner"
                  steps:
                    - id: nested
                      use: ExpressionPipe
                      params:
                        expression: "{{ parent.queue }}"
            """
        )
    )
    assert value(run, "from_parent") == "support/42"
    assert value(run, "from_params") == 42
    assert value(run, "nested") == "support-inner"


async def test_top_level_pipe_has_an_empty_parent() -> None:
    text = (
        "orchestrator:\n  runners:\n    - id: r\n      run:\n        id: top\n"
        "        use: ExpressionPipe\n        params:\n"
        '          expression: "{{ parent | length }}-{{ params | length }}"\n'
    )
    result, _ = await run_config(text)
    assert result.data == {"value": "0-0"}


async def test_env_holds_only_otai_variables_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTAI_TEST_QUEUE", "support")
    monkeypatch.setenv("TEST_TEMPLATES_SECRET", "hunter2")
    _, run = await run_config(
        config(
            """
            - id: queue
              use: ExpressionPipe
              params:
                expression: "{{ env.OTAI_TEST_QUEUE }}"
            - id: hidden
              use: ExpressionPipe
              params:
                expression: "{{ 'TEST_TEMPLATES_SECRET' in env }}"
            - id: direct
              use: ExpressionPipe
              params:
                expression: "{{ env.TEST_TEMPLATES_SECRET }}"
            """
        )
    )
    assert value(run, "queue") == "support"
    assert value(run, "hidden") is False
    assert run.results["direct"].failed
    assert "hunter2" not in run.results["direct"].message


async def test_env_allowlist_adds_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TEMPLATES_ALLOWED", "yes-please")
    monkeypatch.setenv("TEST_TEMPLATES_OTHER", "no")
    _, run = await run_config(
        config(
            """
            - id: allowed
              use: ExpressionPipe
              params:
                expression: "{{ env.TEST_TEMPLATES_ALLOWED }}"
            - id: other
              use: ExpressionPipe
              params:
                expression: "{{ 'TEST_TEMPLATES_OTHER' in env }}"
            """,
            top="env_allowlist: [TEST_TEMPLATES_ALLOWED]\n",
        )
    )
    assert value(run, "allowed") == "yes-please"
    assert value(run, "other") is False


async def test_now_runner_and_trigger() -> None:
    _, run = await run_config(
        config(
            """
            - id: now
              use: ExpressionPipe
              params:
                expression: "{{ now() }}"
            - id: ids
              use: ExpressionPipe
              params:
                expression: "{{ runner }}/{{ trigger }}"
            """
        ),
        trigger=TriggerRef("every_minute"),
    )
    now = value(run, "now")
    assert isinstance(now, datetime)
    assert now.tzinfo is not None
    assert value(run, "ids") == "r/every_minute"


async def test_templates_render_on_every_run_from_one_compiled_config() -> None:
    compiled = build(
        parse(
            config(
                """
                - id: t
                  use: ExpressionPipe
                  params:
                    expression: "{{ trigger }}"
                """
            ),
            "config.yml",
        )
    )
    seen = []
    for trigger in ("first", "second"):
        run = RunContext(runner="r", trigger=TriggerRef(trigger))
        await execute_pipe(compiled.runners[0].pipeline, run)
        seen.append(value(run, "t"))
    assert seen == ["first", "second"]


async def test_sandbox_failure_names_the_config_path() -> None:
    text = config(
        """
        - id: evil
          use: ExpressionPipe
          params:
            expression: "{{ ''.__class__.__mro__ }}"
        """
    )
    result, run = await run_config(text)
    line = line_of(text, "__mro__")
    where = f"config.yml:{line} orchestrator.runners[0].run.steps[0].params.expression"
    assert run.results["evil"].failed
    assert where in run.results["evil"].message
    assert isinstance(run.results["evil"].error, TemplateError)
    assert result.failed
    assert where in result.message


async def test_undefined_name_fails_the_step_with_the_path() -> None:
    # An unknown top-level name is refused at load (tests/core/config/test_template_checks.py);
    # what is missing in the data can only fail at run time.
    text = config(
        """
        - id: ok
          use: ExpressionPipe
          params:
            expression: 1
        - id: typo
          use: ExpressionPipe
          params:
            expression: "Dear {{ parent.custmer }}"
        """
    )
    result, run = await run_config(text)
    line = line_of(text, "custmer")
    message = run.results["typo"].message
    assert f"config.yml:{line} orchestrator.runners[0].run.steps[1].params.expression" in message
    assert "custmer" in message
    assert result.failed
    assert "'typo'" in result.message


async def test_undefined_name_in_if_names_the_if_path() -> None:
    text = config(
        """
        - id: guarded
          if: "{{ parent.unknown_flag }}"
          use: ExpressionPipe
          params:
            expression: 1
        """
    )
    _, run = await run_config(text)
    line = line_of(text, "unknown_flag")
    assert run.results["guarded"].failed
    assert (
        f"config.yml:{line} orchestrator.runners[0].run.steps[0].if"
        in run.results["guarded"].message
    )


def test_syntax_errors_are_config_errors_with_the_path() -> None:
    text = config(
        """
        - id: a
          use: ExpressionPipe
          params:
            expression: "{{ 6* }}"
        - id: b
          if: "{% if %}"
          use: ExpressionPipe
          params:
            expression: ["ok", {"deep": "{{ ) }}"}]
        """
    )
    with pytest.raises(ConfigError) as caught:
        build(parse(text, "config.yml"))
    problems = {p.path: p for p in caught.value.problems}
    first = "orchestrator.runners[0].run.steps[0].params.expression"
    assert problems[first].line == line_of(text, "{{ 6* }}")
    assert problems[first].file == "config.yml"
    assert "orchestrator.runners[0].run.steps[1].if" in problems
    assert "orchestrator.runners[0].run.steps[1].params.expression[1].deep" in problems
    assert f"config.yml:{line_of(text, '{{ 6* }}')}" in str(caught.value)


def test_comment_around_a_single_expression_compiles_in_a_config() -> None:
    compiled = build(
        parse(
            config(
                """
                - id: a
                  use: ExpressionPipe
                  params:
                    expression: "{# the answer #}{{ 6*7 }}"
                """
            ),
            "config.yml",
        )
    )
    assert compiled.runners[0].pipeline.steps[0].params_tree["expression"].native


def test_fail_raises_an_error_that_is_a_template_and_a_pipe_error(
    engine: TemplateEngine,
) -> None:
    with pytest.raises(FailRequested) as caught:
        render(engine, "{{ fail('not today') }}")
    assert str(caught.value) == "not today"
    assert isinstance(caught.value, TemplateError)
    assert isinstance(caught.value, PipeError)


def test_fail_in_a_load_time_template_is_a_config_error() -> None:
    text = (
        "orchestrator:\n  runners:\n    - id: r\n      on:\n        - id: t\n"
        "          params:\n            seconds: \"{{ fail('no schedule') }}\"\n"
        "      run:\n        id: main\n"
    )
    with pytest.raises(ConfigError) as caught:
        build(parse(text, "config.yml"))
    assert any(
        p.path.startswith("orchestrator.runners[0].on[0].params") and "no schedule" in p.message
        for p in caught.value.problems
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ 'a' * 10**9 }}", "repeating 1 items 1000000000 times"),
        ("{{ [0] * 10**8 }}", "repeating 1 items 100000000 times"),
        ("{{ 10 ** (10 ** 9) }}", "would be too large"),
        ("{{ (10 ** 3000) * (10 ** 3000) * (10 ** 3000) * (10 ** 30000) }}", "too large"),
        ("x{{ 'a' * 6000000 }}{{ 'b' * 6000000 }}", "more than 10,000,000"),
    ],
)
@pytest.mark.timeout(60)  # computed instead of refused, these would run for minutes
def test_templates_that_would_take_unbounded_memory_or_time_are_refused(
    source: str, problem: str
) -> None:
    with pytest.raises(TemplateError, match=problem):
        TemplateEngine().compile(source, "runners[0].run.params.x").render({})


def test_bounded_arithmetic_still_works() -> None:
    engine = TemplateEngine()
    assert engine.compile("{{ 2 ** 10 * 3 }}", "p").render({}) == 3072
    assert engine.compile("{{ 'ab' * 3 }}", "p").render({}) == "ababab"
    assert engine.compile("{{ 1.5 ** 2 }}", "p").render({}) == 2.25


@pytest.mark.timeout(60)  # folding the constant would take minutes
def test_validate_never_evaluates_an_unbounded_constant() -> None:
    from open_ticket_ai import build, parse_config

    text = (
        "orchestrator:\n  runners:\n    - id: r\n      on: [{id: h, params: {hours: 1}}]\n"
        "      run: {id: x, use: ExpressionPipe, params: {expression: '{{ 10 ** (10 ** 9) }}'}}\n"
    )
    compiled = build(parse_config(text, "t.yml"))  # compiles, evaluates nothing
    assert compiled.runners[0].id == "r"
