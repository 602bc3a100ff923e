"""CompositePipe: steps in order, the first failure fails it, fallbacks, nesting."""

from __future__ import annotations

import textwrap
from typing import ClassVar

import pytest

from open_ticket_ai import Pipe, PipeContext, PipeError, PipeResult, build, parse_config
from open_ticket_ai.core.component import ParamsModel
from open_ticket_ai.core.pipes.run import RunContext, execute_pipe

HERE = __name__

RUN = "orchestrator.runners[0].run"


class ActParams(ParamsModel):
    outcome: str = "succeed"
    """``succeed``, ``fail`` (a returned failure), ``raise`` or ``pipe-error``."""


class ActPipe(Pipe[ActParams]):
    """Records that it ran, then does what ``outcome`` says."""

    calls: ClassVar[list[str]] = []

    async def process(self, ctx: PipeContext) -> PipeResult:
        type(self).calls.append(self.id)
        match self.params.outcome:
            case "fail":
                return PipeResult.failure(f"{self.id} said no", data={"partial": True})
            case "raise":
                raise RuntimeError(f"{self.id} crashed")
            case "pipe-error":
                raise PipeError(f"{self.id} gave up")
        return PipeResult.success({"value": self.id})


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    ActPipe.calls.clear()


def config(steps: str) -> str:
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 8)
    return (
        "orchestrator:\n  runners:\n    - id: r\n      run:\n        id: main\n"
        f"        use: CompositePipe\n        steps:\n{body}\n"
    )


async def run_config(text: str) -> tuple[PipeResult, RunContext]:
    compiled = build(parse_config(text, "config.yml"))
    run = RunContext(runner="r")
    result = await execute_pipe(compiled.runners[0].pipeline, run)
    return result, run


def act(step_id: str, outcome: str = "succeed", extra: str = "") -> str:
    lines = [f"- id: {step_id}", f'  use: "{HERE}:ActPipe"', f"  params: {{outcome: {outcome}}}"]
    lines += [f"  {line}" for line in extra.splitlines() if line]
    return "\n".join(lines) + "\n"


async def test_steps_run_in_order_and_each_result_is_kept_by_id() -> None:
    result, run = await run_config(config(act("a") + act("b") + act("c")))
    assert result.succeeded
    assert ActPipe.calls == ["a", "b", "c"]
    assert list(run.results) == ["a", "b", "c", "main"]
    assert run.results["b"].data == {"value": "b"}
    assert run.results["main"] is result


async def test_a_later_step_sees_the_earlier_steps_results() -> None:
    text = config(
        act("first")
        + """
- id: second
  use: ExpressionPipe
  params:
    expression: "{{ pipe_result('first') }}-second"
"""
    )
    _, run = await run_config(text)
    assert run.results["second"].data["value"] == "first-second"


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ("fail", "b said no"),
        ("raise", "RuntimeError: b crashed"),
        ("pipe-error", "b gave up"),
    ],
)
async def test_a_failed_step_fails_the_composite_and_stops_it(outcome: str, message: str) -> None:
    result, run = await run_config(config(act("a") + act("b", outcome) + act("c")))
    assert result.failed
    # A raised error's message starts with the step's config path: where and why.
    where = "" if outcome == "fail" else f"config.yml:11 {RUN}.steps[1]: "
    assert result.message == f"step 'b' failed: {where}{message}"
    assert ActPipe.calls == ["a", "b"]
    assert run.results["b"].failed
    assert run.results["b"].message == where + message
    assert run.results["c"].skipped
    assert "'b'" in run.results["c"].message


async def test_a_raised_exception_is_kept_on_the_result() -> None:
    _, run = await run_config(config(act("boom", "raise")))
    assert isinstance(run.results["boom"].error, RuntimeError)
    assert "PipeError" not in run.results["boom"].message


async def test_the_fallback_runs_when_its_if_asks_about_the_failure() -> None:
    text = config(
        act("update", "fail")
        + act("unrelated")
        + act("fallback", extra="if: \"{{ has_failed('update') }}\"")
        + act("other_fallback", extra="if: \"{{ has_failed('unrelated') }}\"")
        + act("after")
    )
    result, run = await run_config(text)
    assert ActPipe.calls == ["update", "fallback"]
    assert run.results["fallback"].succeeded
    assert run.results["unrelated"].skipped
    assert run.results["other_fallback"].skipped
    assert run.results["after"].skipped
    assert result.failed
    assert result.message == "step 'update' failed: update said no"


async def test_after_a_failure_an_if_that_does_not_ask_about_outcomes_is_skipped() -> None:
    text = config(
        act("update", "fail")
        + act("plain_true", extra="if: true")
        + act("unrelated_template", extra='if: "{{ 1 == 1 }}"')
        + act("asks", extra="if: \"{{ not has_succeeded('update') }}\"")
    )
    _, run = await run_config(text)
    assert ActPipe.calls == ["update", "asks"]
    assert run.results["plain_true"].skipped
    assert run.results["unrelated_template"].skipped


async def test_the_fallback_is_skipped_when_nothing_failed() -> None:
    text = config(
        act("update") + act("fallback", extra="if: \"{{ has_failed('update') }}\"") + act("after")
    )
    result, run = await run_config(text)
    assert result.succeeded
    assert ActPipe.calls == ["update", "after"]
    assert run.results["fallback"].skipped


async def test_a_failing_fallback_does_not_replace_the_first_failure() -> None:
    text = config(
        act("update", "fail") + act("fallback", "raise", "if: \"{{ has_failed('update') }}\"")
    )
    result, run = await run_config(text)
    assert ActPipe.calls == ["update", "fallback"]
    assert run.results["fallback"].failed
    assert result.message == "step 'update' failed: update said no"


async def test_skipped_steps_do_not_fail_the_composite() -> None:
    result, run = await run_config(config(act("a", extra="if: false") + act("b")))
    assert result.succeeded
    assert run.results["a"].skipped
    assert ActPipe.calls == ["b"]


async def test_an_empty_composite_succeeds() -> None:
    text = "orchestrator:\n  runners:\n    - id: r\n      run:\n        id: main\n"
    result, run = await run_config(text)
    assert result.succeeded
    assert list(run.results) == ["main"]


async def test_composite_is_the_default_pipe() -> None:
    text = config(act("a")).replace("        use: CompositePipe\n", "")
    assert "CompositePipe" not in text
    result, _ = await run_config(text)
    assert result.succeeded
    assert ActPipe.calls == ["a"]


NESTED = """
- id: before
  use: "{here}:ActPipe"
- id: inner
  params: {{queue: support}}
  steps:
    - id: x
      use: "{here}:ActPipe"
      params: {{outcome: {x}}}
    - id: y
      use: "{here}:ActPipe"
    - id: inner_fallback
      if: "{{{{ has_failed('x') }}}}"
      use: ExpressionPipe
      params:
        expression: "{{{{ parent.queue }}}}"
- id: outer_after
  use: "{here}:ActPipe"
- id: outer_fallback
  if: "{{{{ has_failed('inner') }}}}"
  use: "{here}:ActPipe"
"""


async def test_nested_composites_succeed() -> None:
    result, run = await run_config(config(NESTED.format(here=HERE, x="succeed")))
    assert result.succeeded
    assert ActPipe.calls == ["before", "x", "y", "outer_after"]
    assert run.results["inner"].succeeded
    assert run.results["inner_fallback"].skipped
    assert run.results["outer_fallback"].skipped
    assert list(run.results) == [
        "before",
        "x",
        "y",
        "inner_fallback",
        "inner",
        "outer_after",
        "outer_fallback",
        "main",
    ]


async def test_a_failure_in_a_nested_composite_propagates_outwards() -> None:
    result, run = await run_config(config(NESTED.format(here=HERE, x="raise")))
    assert ActPipe.calls == ["before", "x", "outer_fallback"]
    assert run.results["y"].skipped
    assert run.results["inner_fallback"].data == {"value": "support"}
    assert run.results["inner"].failed
    crashed = f"config.yml:13 {RUN}.steps[1].steps[0]: RuntimeError: x crashed"
    assert run.results["inner"].message == f"step 'x' failed: {crashed}"
    assert run.results["outer_after"].skipped
    assert run.results["outer_fallback"].succeeded
    assert result.failed
    assert result.message == f"step 'inner' failed: step 'x' failed: {crashed}"


async def test_the_same_pipeline_runs_again_from_scratch() -> None:
    compiled = build(parse_config(config(act("a") + act("b", "fail") + act("c")), "config.yml"))
    for _ in range(2):
        run = RunContext(runner="r")
        result = await execute_pipe(compiled.runners[0].pipeline, run)
        assert result.failed
        assert run.results["c"].skipped
    assert ActPipe.calls == ["a", "b", "a", "b"]
