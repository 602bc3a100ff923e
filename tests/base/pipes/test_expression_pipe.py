"""ExpressionPipe: ``data.value`` is the rendered ``expression``; ``fail("why")`` fails it."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from open_ticket_ai import ConfigError, PipeResult, build, parse_config
from open_ticket_ai.base.pipes.expression_pipe import ExpressionParams, ExpressionPipe
from open_ticket_ai.core.pipes.run import RunContext, execute_pipe
from open_ticket_ai.core.templates import FailRequested


def config(steps: str) -> str:
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 8)
    return (
        "orchestrator:\n  runners:\n    - id: r\n      run:\n        id: main\n"
        f"        steps:\n{body}\n"
    )


def one(expression: str, use: str = "ExpressionPipe") -> str:
    return config(f"- id: e\n  use: {use}\n  params:\n    expression: {expression}\n")


async def run_config(text: str) -> tuple[PipeResult, RunContext]:
    compiled = build(parse_config(text, "config.yml"))
    run = RunContext(runner="r")
    result = await execute_pipe(compiled.runners[0].pipeline, run)
    return result, run


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('"{{ 6*7 }}"', 42),
        ('"{{ 6*7 }} items"', "42 items"),
        ("\"{{ ['a', 'b'] | join(',') }}\"", "a,b"),
        ("\"{{ {'k': [1, 2]} }}\"", {"k": [1, 2]}),
        ('"{{ none }}"', None),
        ("5", 5),
        ("plain text", "plain text"),
        ("[1, 2]", [1, 2]),
        ("{a: 1}", {"a": 1}),
        ('[1, "{{ 1 + 1 }}", {b: "{{ \'c\' }}"}]', [1, 2, {"b": "c"}]),
    ],
)
async def test_the_value_is_the_rendered_expression(expression: str, expected: Any) -> None:
    result, run = await run_config(one(expression))
    assert result.succeeded, result.message
    assert run.results["e"].succeeded
    assert run.results["e"].data == {"value": expected}
    assert type(run.results["e"].data["value"]) is type(expected)


@pytest.mark.parametrize(
    "use",
    [
        "ExpressionPipe",
        '"open_ticket_ai.base.pipes.expression_pipe:ExpressionPipe"',
        '"open_ticket_ai.base.expression_pipe:ExpressionPipe"',
    ],
)
async def test_it_is_reachable_by_its_names(use: str) -> None:
    _, run = await run_config(one('"{{ 1 }}"', use))
    assert run.results["e"].data == {"value": 1}


async def test_it_reads_earlier_results() -> None:
    text = config(
        """
        - id: fetch
          use: ExpressionPipe
          params:
            expression: "{{ [{'id': 1}, {'id': 2}, {'id': 3}] }}"
        - id: count
          use: ExpressionPipe
          params:
            expression: "{{ pipe_result('fetch') | length }}"
        - id: ids
          use: ExpressionPipe
          params:
            expression: "{{ pipe_result('fetch') | map(attribute='id') | select('odd') | list }}"
        """
    )
    _, run = await run_config(text)
    assert run.results["count"].data == {"value": 3}
    assert run.results["ids"].data == {"value": [1, 3]}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("\"{{ fail('why') }}\"", "why"),
        ("\"{{ fail('too many: ' ~ 3) }}\"", "too many: 3"),
        ('"{{ fail() }}"', "failed"),
        ("\"Subject: {{ fail('no subject') }}\"", "no subject"),
        ("\"{{ 1 if true else fail('unreachable') }}\"", None),
        ("\"{{ fail('empty') if (pipe_result('n') | length) == 0 else 'ok' }}\"", "empty"),
    ],
)
async def test_fail_in_the_expression_fails_it_with_that_message(
    expression: str, message: str | None
) -> None:
    text = config(
        "- id: n\n  use: ExpressionPipe\n  params: {expression: []}\n"
        f"- id: e\n  use: ExpressionPipe\n  params:\n    expression: {expression}\n"
        "- id: after\n  use: ExpressionPipe\n  params: {expression: 1}\n"
    )
    result, run = await run_config(text)
    if message is None:
        assert run.results["e"].succeeded
        assert run.results["after"].succeeded
        return
    assert run.results["e"].failed
    assert run.results["e"].message == message
    assert isinstance(run.results["e"].error, FailRequested)
    assert run.results["e"].data == {}
    assert run.results["after"].skipped
    assert result.failed
    assert result.message == f"step 'e' failed: {message}"


async def test_a_failed_expression_can_be_handled_by_a_fallback() -> None:
    text = config(
        """
        - id: check
          use: ExpressionPipe
          params:
            expression: "{{ fail('queue is full') }}"
        - id: fallback
          if: "{{ has_failed('check') }}"
          use: ExpressionPipe
          params:
            expression: "handled"
        """
    )
    result, run = await run_config(text)
    assert run.results["fallback"].data == {"value": "handled"}
    assert result.message == "step 'check' failed: queue is full"


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ("{}", "orchestrator.runners[0].run.steps[0].params.expression"),
        ("{expression: 1, extra: 2}", "orchestrator.runners[0].run.steps[0].params.extra"),
    ],
)
def test_params_are_checked_at_load(params: str, path: str) -> None:
    text = config(f"- id: e\n  use: ExpressionPipe\n  params: {params}\n")
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    assert [p.path for p in caught.value.problems] == [path]


def test_the_params_model() -> None:
    assert ExpressionPipe.Params is ExpressionParams
    assert ExpressionParams(expression=[1]).expression == [1]
    with pytest.raises(ValueError, match="expression"):
        ExpressionParams()  # type: ignore[call-arg]
