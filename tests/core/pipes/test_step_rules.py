"""The step rules every pipe follows: ``if``, ``depends_on``, ``retry`` and ``timeout``."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
import threading
import time
from typing import Literal

import pytest

from open_ticket_ai import ConfigError, Pipe, PipeContext, PipeResult, build, parse_config
from open_ticket_ai.core.component import ParamsModel
from open_ticket_ai.core.pipes.run import RunContext, execute_pipe

HERE = __name__

ATTEMPTS: dict[str, list[float]] = {}
"""Monotonic start time of every attempt, by the pipe's ``key``."""
STARTED: dict[str, asyncio.Event] = {}
"""Set when a FlakyPipe with that ``key`` starts an attempt."""


class TransientError(ConnectionError):
    """An OSError subclass, for matching ``retry.on`` by a base class name."""


ERRORS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "KeyError": KeyError,
    "TransientError": TransientError,
    "TimeoutError": TimeoutError,
}


class FlakyParams(ParamsModel):
    key: str = "flaky"
    failures: int = 0
    """How many attempts fail before one succeeds."""
    how: Literal["raise", "return", "skip"] = "raise"
    error: str = "ValueError"
    sleep: list[float] = []
    """Seconds to sleep in each attempt (the last entry for later attempts)."""


class FlakyPipe(Pipe[FlakyParams]):
    """Fails its first ``failures`` attempts, then succeeds with the attempt number."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        attempts = ATTEMPTS.setdefault(self.params.key, [])
        attempts.append(time.monotonic())
        STARTED.setdefault(self.params.key, asyncio.Event()).set()
        number = len(attempts)
        if self.params.sleep:
            await asyncio.sleep(self.params.sleep[min(number, len(self.params.sleep)) - 1])
        if number > self.params.failures:
            return PipeResult.success({"value": number})
        if self.params.how == "skip":
            return PipeResult.skip("nothing to do")
        if self.params.how == "return":
            return PipeResult.failure(f"attempt {number} failed")
        raise ERRORS[self.params.error](f"attempt {number}")


BLOCKER_STARTED = threading.Event()
BLOCKER_RELEASE = threading.Event()


class BlockingSyncPipe(Pipe):
    """A plain ``def process`` that blocks its worker thread until released."""

    def process(self, ctx: PipeContext) -> PipeResult:
        BLOCKER_STARTED.set()
        released = BLOCKER_RELEASE.wait(timeout=30)
        return PipeResult.success({"released": released})


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    ATTEMPTS.clear()
    STARTED.clear()
    BLOCKER_STARTED.clear()
    BLOCKER_RELEASE.clear()


def config(steps: str, *, main_params: str = "{}") -> str:
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 8)
    return (
        "orchestrator:\n  runners:\n    - id: r\n      run:\n        id: main\n"
        f"        params: {main_params}\n        steps:\n{body}\n"
    )


def flaky(step_id: str, params: str = "{}", extra: str = "") -> str:
    """A FlakyPipe step; ``extra`` holds more keys of the step (YAML lines)."""
    lines = [f"- id: {step_id}", f'  use: "{HERE}:FlakyPipe"', f"  params: {params}"]
    lines += [f"  {line}" for line in textwrap.dedent(extra).splitlines() if line.strip()]
    return "\n".join(lines) + "\n"


async def run_config(text: str) -> tuple[PipeResult, RunContext]:
    compiled = build(parse_config(text, "config.yml"))
    run = RunContext(runner="r")
    async with asyncio.timeout(60):  # a hang is a failure, not a stuck suite
        result = await execute_pipe(compiled.runners[0].pipeline, run)
    return result, run


# -- if -------------------------------------------------------------------------------------

FALSE_CONDITIONS = [
    "false",
    "no",
    '"false"',
    '"False"',
    "0",
    "0.0",
    '""',
    '"none"',
    '"{{ none }}"',
    '"{{ false }}"',
    '"{{ 0 }}"',
    "\"{{ '' }}\"",
    '"{{ 1 > 2 }}"',
    '"{{ [] }}"',
    '"{{ parent.enabled }} "',
]


@pytest.mark.parametrize("condition", FALSE_CONDITIONS)
async def test_a_false_if_skips_the_step(condition: str) -> None:
    text = config(
        flaky("guarded", "{key: guarded}", f"if: {condition}") + flaky("after", "{key: after}"),
        main_params="{enabled: false}",
    )
    result, run = await run_config(text)
    assert run.results["guarded"].skipped
    assert run.results["guarded"].status == "skipped"
    assert "guarded" not in ATTEMPTS
    assert run.results["after"].succeeded
    assert result.succeeded


TRUE_CONDITIONS = [
    "true",
    '"true"',
    "1",
    '"yes"',
    "null",
    '"{{ 1 < 2 }}"',
    '"{{ parent.enabled }}"',
    "\"{{ has_succeeded('first') }}\"",
    "\"{{ pipe_result('first') == 1 }}\"",
]


@pytest.mark.parametrize("condition", TRUE_CONDITIONS)
async def test_a_true_if_runs_the_step(condition: str) -> None:
    text = config(
        flaky("first", "{key: first}") + flaky("guarded", "{key: guarded}", f"if: {condition}"),
        main_params="{enabled: true}",
    )
    result, run = await run_config(text)
    assert run.results["guarded"].succeeded
    assert len(ATTEMPTS["guarded"]) == 1
    assert result.succeeded


async def test_a_failing_if_fails_the_step_without_running_it() -> None:
    text = config(flaky("guarded", "{}", "if: \"{{ fail('not today') }}\""))
    result, run = await run_config(text)
    assert run.results["guarded"].failed
    assert "not today" in run.results["guarded"].message
    assert ATTEMPTS == {}
    assert result.failed


def test_if_syntax_error_is_a_config_error() -> None:
    text = config(flaky("guarded", "{}", 'if: "{{ 1 + }}"'))
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    assert [p.path for p in caught.value.problems] == ["orchestrator.runners[0].run.steps[0].if"]


# -- depends_on -----------------------------------------------------------------------------


async def test_depends_on_a_succeeded_step_runs() -> None:
    text = config(
        flaky("a", "{key: a}")
        + flaky("b", "{key: b}", "depends_on: a")
        + flaky("c", "{key: c}", "depends_on: [a, b]")
    )
    result, run = await run_config(text)
    assert result.succeeded
    assert run.results["b"].succeeded
    assert run.results["c"].succeeded


async def test_depends_on_a_failed_step_skips_even_when_if_is_true() -> None:
    text = config(
        flaky("a", "{key: a, failures: 1}")
        + flaky("b", "{key: b}", "if: \"{{ has_failed('a') }}\"\ndepends_on: [a]")
    )
    _, run = await run_config(text)
    assert run.results["a"].failed
    assert run.results["b"].skipped
    assert "'a'" in run.results["b"].message
    assert "b" not in ATTEMPTS


async def test_depends_on_a_skipped_step_skips() -> None:
    text = config(
        flaky("a", "{key: a}", "if: false")
        + flaky("ok", "{key: ok}")
        + flaky("b", "{key: b}", "depends_on: [ok, a]")
        + flaky("c", "{key: c}")
    )
    result, run = await run_config(text)
    assert run.results["b"].skipped
    assert "'a'" in run.results["b"].message
    assert "b" not in ATTEMPTS
    assert run.results["c"].succeeded
    assert result.succeeded


async def test_depends_on_reaches_out_of_a_nested_composite() -> None:
    text = config(
        flaky("a", "{key: a}")
        + "- id: group\n  steps:\n"
        + textwrap.indent(flaky("inner", "{key: inner}", "depends_on: a"), "    ")
    )
    _, run = await run_config(text)
    assert run.results["inner"].succeeded


def test_depends_on_a_later_or_unknown_step_is_a_config_error() -> None:
    text = config(
        flaky("a", "{}", "depends_on: b") + flaky("b") + flaky("c", "{}", "depends_on: x")
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    paths = [p.path for p in caught.value.problems]
    assert "orchestrator.runners[0].run.steps[0].depends_on[0]" in paths
    assert "orchestrator.runners[0].run.steps[2].depends_on[0]" in paths


# -- retry ----------------------------------------------------------------------------------


async def test_retry_until_an_attempt_succeeds() -> None:
    text = config(flaky("f", "{failures: 2}", "retry: {attempts: 3, delay: 0.01}"))
    result, run = await run_config(text)
    assert result.succeeded
    assert run.results["f"].succeeded
    assert run.results["f"].data == {"value": 3}
    assert len(ATTEMPTS["flaky"]) == 3


async def test_retry_gives_up_after_the_attempts() -> None:
    text = config(flaky("f", "{failures: 5}", "retry: {attempts: 2, delay: 0.01}"))
    result, run = await run_config(text)
    assert len(ATTEMPTS["flaky"]) == 2
    assert run.results["f"].failed
    where = "config.yml:8 orchestrator.runners[0].run.steps[0]"
    assert run.results["f"].message == f"{where}: ValueError: attempt 2 (after 2 attempts)"
    assert isinstance(run.results["f"].error, ValueError)
    assert result.failed


async def test_no_retry_without_a_retry_rule() -> None:
    _, run = await run_config(config(flaky("f", "{failures: 1}")))
    assert run.results["f"].failed
    assert len(ATTEMPTS["flaky"]) == 1
    assert "after" not in run.results["f"].message


async def test_returned_failures_are_retried_without_on() -> None:
    text = config(flaky("f", "{failures: 1, how: return}", "retry: {attempts: 3, delay: 0.01}"))
    _, run = await run_config(text)
    assert run.results["f"].succeeded
    assert len(ATTEMPTS["flaky"]) == 2


@pytest.mark.parametrize(
    ("params", "on", "attempts"),
    [
        ("{failures: 1, error: ValueError}", "[ValueError]", 2),
        ("{failures: 1, error: KeyError}", "[ValueError]", 1),
        ("{failures: 1, error: KeyError}", "[ValueError, KeyError]", 2),
        ("{failures: 1, error: KeyError}", "LookupError", 2),
        ("{failures: 1, error: TransientError}", "[OSError]", 2),
        ("{failures: 1, error: TransientError}", "[Exception]", 2),
        ("{failures: 1, error: ValueError}", "[Failure]", 1),
        ("{failures: 1, how: return}", "[Failure]", 2),
        ("{failures: 1, how: return}", "[ValueError]", 1),
    ],
)
async def test_retry_on_names_exception_classes_and_failure(
    params: str, on: str, attempts: int
) -> None:
    text = config(flaky("f", params, f"retry: {{attempts: 3, delay: 0.01, on: {on}}}"))
    _, run = await run_config(text)
    assert len(ATTEMPTS["flaky"]) == attempts
    assert run.results["f"].succeeded is (attempts == 2)


async def test_a_skipped_result_is_not_retried() -> None:
    text = config(flaky("f", "{failures: 1, how: skip}", "retry: {attempts: 3, delay: 0.01}"))
    result, run = await run_config(text)
    assert run.results["f"].skipped
    assert len(ATTEMPTS["flaky"]) == 1
    assert result.succeeded


async def test_retry_waits_delay_times_backoff() -> None:
    text = config(flaky("f", "{failures: 3}", "retry: {attempts: 4, delay: 0.02, backoff: 2}"))
    _, run = await run_config(text)
    assert run.results["f"].succeeded
    starts = ATTEMPTS["flaky"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Lower bounds only: the waits are 20ms, 40ms, 80ms (a loop may run them late, never early).
    assert gaps[0] >= 0.019
    assert gaps[1] >= 0.039
    assert gaps[2] >= 0.079


async def test_max_delay_caps_the_wait() -> None:
    # Without the cap this would wait ten minutes and hit run_config's deadline.
    text = config(
        flaky("f", "{failures: 1}", 'retry: {attempts: 2, delay: 600, max_delay: "10ms"}')
    )
    _, run = await run_config(text)
    assert run.results["f"].succeeded


async def test_retry_accepts_durations_as_text() -> None:
    text = config(flaky("f", "{failures: 1}", 'retry: {attempts: 2, delay: "10ms"}'))
    compiled = build(parse_config(text, "config.yml"))
    retry = compiled.runners[0].pipeline.steps[0].retry
    assert retry is not None
    assert retry.delay == pytest.approx(0.01)
    _, run = await run_config(text)
    assert run.results["f"].succeeded


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        ("{attempts: 0}", "attempts"),
        ("{delay: -1}", "delay"),
        ("{backoff: 0.5}", "backoff"),
        ("{delay: soon}", "delay"),
        ("{tries: 3}", "tries"),
    ],
)
def test_invalid_retry_is_a_config_error(retry: str, field: str) -> None:
    text = config(flaky("f", "{}", f"retry: {retry}"))
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    paths = [p.path for p in caught.value.problems]
    assert f"orchestrator.runners[0].run.steps[0].retry.{field}" in paths


async def test_a_retried_composite_runs_its_steps_again() -> None:
    text = config(
        "- id: group\n  retry: {attempts: 2, delay: 0.01}\n  steps:\n"
        + textwrap.indent(flaky("a", "{key: a}") + flaky("b", "{key: b, failures: 1}"), "    ")
    )
    result, run = await run_config(text)
    assert result.succeeded
    assert len(ATTEMPTS["a"]) == 2
    assert len(ATTEMPTS["b"]) == 2
    assert run.results["b"].data == {"value": 2}


# -- timeout --------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "shown"), [("0.05", "50ms"), ('"100ms"', "100ms")])
async def test_a_pipe_over_its_timeout_fails(limit: str, shown: str) -> None:
    text = config(flaky("slow", "{sleep: [30]}", f"timeout: {limit}") + flaky("after"))
    result, run = await run_config(text)
    assert run.results["slow"].failed
    assert run.results["slow"].message == f"timed out after {shown}"
    assert isinstance(run.results["slow"].error, TimeoutError)
    assert run.results["after"].skipped
    assert result.message == f"step 'slow' failed: timed out after {shown}"


@pytest.mark.parametrize(("limit", "seconds"), [('"30s"', 30.0), ("30", 30.0), ('"1m"', 60.0)])
async def test_a_pipe_within_its_timeout_succeeds(limit: str, seconds: float) -> None:
    text = config(flaky("quick", "{sleep: [0.01]}", f"timeout: {limit}"))
    compiled = build(parse_config(text, "config.yml"))
    assert compiled.runners[0].pipeline.steps[0].timeout == seconds
    _, run = await run_config(text)
    assert run.results["quick"].succeeded


@pytest.mark.parametrize("timeout", ["0", "-1", "soon", '""'])
def test_invalid_timeout_is_a_config_error(timeout: str) -> None:
    text = config(flaky("f", "{}", f"timeout: {timeout}"))
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    paths = [p.path for p in caught.value.problems]
    assert "orchestrator.runners[0].run.steps[0].timeout" in paths


async def test_timeout_applies_to_each_attempt() -> None:
    text = config(
        flaky(
            "f",
            "{sleep: [30, 0]}",
            "timeout: 0.05\nretry: {attempts: 2, delay: 0.01, on: TimeoutError}",
        )
    )
    _, run = await run_config(text)
    assert run.results["f"].succeeded
    assert run.results["f"].data == {"value": 2}


async def test_a_timeout_on_a_composite_covers_its_steps() -> None:
    text = config(
        "- id: group\n  timeout: 0.05\n  steps:\n"
        + textwrap.indent(flaky("a", "{key: a}") + flaky("b", "{key: b, sleep: [30]}"), "    ")
    )
    result, run = await run_config(text)
    assert run.results["a"].succeeded
    assert run.results["group"].failed
    assert run.results["group"].message == "timed out after 50ms"
    assert result.failed


async def test_a_timeout_error_raised_by_the_pipe_is_not_its_timeout() -> None:
    text = config(flaky("f", "{failures: 1, error: TimeoutError}", "timeout: 30"))
    _, run = await run_config(text)
    assert run.results["f"].failed
    assert run.results["f"].message == "TimeoutError: attempt 1"


async def test_a_sync_pipe_over_its_timeout_fails() -> None:
    text = config(f'- id: blocked\n  use: "{HERE}:BlockingSyncPipe"\n  timeout: 0.05\n')
    try:
        _, run = await run_config(text)
    finally:
        BLOCKER_RELEASE.set()  # let the worker thread finish either way
    assert BLOCKER_STARTED.is_set()
    assert run.results["blocked"].failed
    assert run.results["blocked"].message == "timed out after 50ms"


async def test_cancelling_a_run_cancels_the_running_pipe() -> None:
    compiled = build(parse_config(config(flaky("slow", "{sleep: [30]}")), "config.yml"))
    run = RunContext(runner="r")
    started = STARTED.setdefault("flaky", asyncio.Event())
    task = asyncio.create_task(execute_pipe(compiled.runners[0].pipeline, run))
    async with asyncio.timeout(10):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "slow" not in run.results
