"""RunnerFinishedTrigger: runners chained on how another runner ended, in-process."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Callable, Collection
from typing import Any

import pytest

from open_ticket_ai import ComponentError, ConfigError, build, parse_config
from open_ticket_ai.base.triggers import RunnerFinishedTrigger
from open_ticket_ai.base.triggers.runner_finished_trigger import RunnerFinishedParams
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.triggers.base import FireOutcome, FireStatus
from open_ticket_ai.runtime.events import RunEnded, RunFailed, RunFinished, RunOutcome
from open_ticket_ai.runtime.orchestrator import Orchestrator

ECHO = 'run: {id: echo, use: ExpressionPipe, params: {expression: "{{ trigger.payload }}"}}'


async def run_for(config: str, seconds: float = 0.3) -> Orchestrator:
    orchestrator = Orchestrator(build(parse_config(textwrap.dedent(config), "chain.yml")))
    main = asyncio.create_task(orchestrator.run())
    await asyncio.sleep(seconds)
    orchestrator.request_stop()
    assert await main == 0
    return orchestrator


def chained(source_expression: str) -> str:
    """A one-time runner ``source`` and three runners following it, one per status."""
    return f"""
        runners:
          - id: source
            run: {{id: s, use: ExpressionPipe, params: {{expression: "{source_expression}"}}}}
          - id: on_success
            on: [{{id: source_ok, use: RunnerFinishedTrigger, params: {{runner: source}}}}]
            {ECHO}
          - id: on_failure
            on: [{{id: source_failed, use: RunnerFinishedTrigger,
                   params: {{runner: source, status: failed}}}}]
            {ECHO}
          - id: on_any
            on: [{{id: source_any, use: RunnerFinishedTrigger,
                   params: {{runner: source, status: any}}}}]
            {ECHO}
        """


def runs(orchestrator: Orchestrator) -> dict[str, int]:
    return {id: r.stats.runs for id, r in orchestrator.runners.items()}


@pytest.mark.virtual_clock
async def test_success_fires_the_succeeded_and_any_followers() -> None:
    orchestrator = await run_for(chained("done"))
    assert runs(orchestrator) == {"source": 1, "on_success": 1, "on_failure": 0, "on_any": 1}
    echoed = orchestrator.runners["on_success"].last_result
    assert echoed is not None
    assert echoed.data == {
        "value": {"runner": "source", "status": "succeeded", "message": ""},
    }


@pytest.mark.virtual_clock
async def test_failure_fires_the_failed_and_any_followers() -> None:
    orchestrator = await run_for(chained("{{ fail('disk full') }}"))
    assert runs(orchestrator) == {"source": 1, "on_success": 0, "on_failure": 1, "on_any": 1}
    echoed = orchestrator.runners["on_failure"].last_result
    assert echoed is not None
    payload = echoed.data["value"]
    assert payload["runner"] == "source"
    assert payload["status"] == "failed"
    assert "disk full" in payload["message"]


@pytest.mark.virtual_clock
async def test_chains_run_hop_after_hop_on_a_schedule() -> None:
    orchestrator = await run_for(
        f"""
        runners:
          - id: a
            on: [{{id: tick, params: {{milliseconds: 100}}}}]
            run: {{id: a, use: ExpressionPipe, params: {{expression: a}}}}
          - id: b
            on: [{{id: after_a, use: RunnerFinishedTrigger, params: {{runner: a}}}}]
            {ECHO}
          - id: c
            on: [{{id: after_b, use: RunnerFinishedTrigger, params: {{runner: b}}}}]
            {ECHO}
        """,
        seconds=0.45,
    )
    counts = runs(orchestrator)
    # Ticks at 0.1 to 0.4; on the virtual clock each chain runs to its end at its tick's
    # instant, so the stop at 0.45 cannot fall between hops.
    assert counts["a"] == counts["b"] == counts["c"] == 4
    last = orchestrator.runners["c"].last_result
    assert last is not None
    assert last.data["value"]["runner"] == "b"


@pytest.mark.virtual_clock
async def test_a_runner_chained_to_itself_runs_once_not_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orchestrator = await run_for(
        """
        runners:
          - id: loop
            on:
              - {id: after_me, use: RunnerFinishedTrigger, params: {runner: loop, status: any}}
              - {id: tick, params: {milliseconds: 50}}
            run: {id: x, use: ExpressionPipe, params: {expression: x}}
        """,
        seconds=0.12,
    )
    assert orchestrator.runners["loop"].stats.runs == 2  # the 50 ms timer, not the chain
    refused = [r for r in caplog.records if getattr(r, "event", "") == "trigger.refused"]
    assert refused
    assert "busy" in refused[0].fields["reason"]  # type: ignore[attr-defined]


def test_bad_params_are_config_errors() -> None:
    text = f"""
        runners:
          - id: b
            on: [{{id: t, use: RunnerFinishedTrigger, params: {{runner: a, status: done}}}}]
            {ECHO}
        """
    with pytest.raises(ConfigError, match=r"status"):
        build(parse_config(textwrap.dedent(text), "chain.yml"))


class DirectoryHost:
    """A host that knows the configured runners (as the orchestrator's may)."""

    def __init__(self, runner_ids: Collection[str]) -> None:
        self.runner_ids = runner_ids
        self.callbacks: list[Callable[[RunEnded], None]] = []
        self.fired: list[Any] = []

    def fire(self, payload: Any = None) -> list[FireOutcome]:
        self.fired.append(payload)
        return [FireOutcome("follower", FireStatus.STARTED, "follower-1")]

    def subscribe_run_finished(self, callback: Callable[[RunEnded], None]) -> None:
        self.callbacks.append(callback)


async def test_an_unknown_runner_is_reported_when_the_host_knows_the_runners() -> None:
    trigger = RunnerFinishedTrigger(RunnerFinishedParams(runner="typo"), id="after_typo")
    with pytest.raises(ComponentError, match=r"'typo', which is not configured.*runners: a, b"):
        await trigger.serve(DirectoryHost(["b", "a"]))


async def test_only_the_followed_runner_with_the_wanted_status_fires() -> None:
    trigger = RunnerFinishedTrigger(RunnerFinishedParams(runner="a", status="failed"), id="after_a")
    host = DirectoryHost(["a"])
    await trigger.serve(host)
    (callback,) = host.callbacks
    callback(ended("other", PipeResult.failure("x")))
    callback(ended("a", PipeResult.success()))
    callback(ended("a", PipeResult.skip("nothing to do")))
    callback(ended("a", PipeResult.failure("boom")))
    callback(ended("a", PipeResult.failure("timed out after 1s"), RunOutcome.TIMED_OUT))
    assert host.fired == [
        {"runner": "a", "status": "failed", "message": "boom"},
        {"runner": "a", "status": "failed", "message": "timed out after 1s"},
    ]


def ended(runner: str, result: PipeResult, outcome: RunOutcome | None = None) -> RunEnded:
    kind = RunFailed if result.failed else RunFinished
    if outcome is None:
        outcome = RunOutcome.FAILED if result.failed else RunOutcome(result.status.value)
    return kind(
        runner=runner,
        trigger="t",
        run_id=f"{runner}-1",
        outcome=outcome,
        started=0.0,
        duration=0.1,
        result=result,
    )


def test_following_an_unknown_runner_is_a_config_error_with_its_path() -> None:
    text = textwrap.dedent(
        """
        runners:
          - id: a
            run: {id: x, use: ExpressionPipe, params: {expression: 1}}
          - id: b
            on: [{id: after, use: RunnerFinishedTrigger, params: {runner: aa}}]
            run: {id: y, use: ExpressionPipe, params: {expression: 2}}
        """
    )
    with pytest.raises(ConfigError) as info:
        build(parse_config(text))
    (problem,) = info.value.problems
    assert problem.path == "runners[1].on[0].params.runner"
    assert problem.message == "no runner 'aa' to follow (runners: a, b)"
