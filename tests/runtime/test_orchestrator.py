"""The Orchestrator in-process: services, custom triggers, one-time exit codes, limits."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.virtual_clock import VirtualClockLoop

from open_ticket_ai import ComponentError, build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator

# In-process: every timer and sleep here runs on the virtual clock (tests/conftest.py).
pytestmark = pytest.mark.virtual_clock

PLUGIN = '''
import asyncio
import time
from typing import ClassVar

from open_ticket_ai import ParamsModel, Pipe, PipeContext, PipeResult, Service, TimeTrigger
from open_ticket_ai.core.triggers.base import EventTrigger, TriggerHost


class Journal(Service):
    """Records lifecycle calls in a class-level list the test reads."""

    log: ClassVar[list[str]] = []

    async def open(self) -> None:
        Journal.log.append(f"open {self.id}")

    async def close(self) -> None:
        Journal.log.append(f"close {self.id}")


class WriteParams(ParamsModel):
    journal: str
    text: str
    sleep: float = 0.0


class WritePipe(Pipe[WriteParams]):
    active: ClassVar[int] = 0
    peak: ClassVar[int] = 0

    async def process(self, ctx: PipeContext) -> PipeResult:
        journal = ctx.service(self.params.journal, Journal)
        WritePipe.active += 1
        WritePipe.peak = max(WritePipe.peak, WritePipe.active)
        try:
            await asyncio.sleep(self.params.sleep)
        finally:
            WritePipe.active -= 1
        journal.log.append(self.params.text)
        return PipeResult.success({"value": self.params.text})


class PulseParams(ParamsModel):
    times: int
    gap: float = 0.05


class Pulse(EventTrigger[PulseParams]):
    """Fires itself `times` times with a payload; records what each fire did."""

    outcomes: ClassVar[list[object]] = []
    finished: ClassVar[list[tuple[str, str]]] = []

    async def serve(self, host: TriggerHost) -> None:
        host.subscribe_run_finished(
            lambda event: Pulse.finished.append((event.runner, event.result.status))
        )
        for n in range(self.params.times):
            Pulse.outcomes.append(host.fire({"n": n}))
            await asyncio.sleep(self.params.gap)


class EveryParams(ParamsModel):
    seconds: float


class WallEvery(TimeTrigger[EveryParams]):
    """A wall-clock trigger, to show the plugin API: fires every `seconds` of POSIX time."""

    clock = "wall"

    def next_fire_after(self, after: float, start: float) -> float:
        step = self.params.seconds
        return (int(after / step) + 1) * step
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    (tmp_path / "orchplugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("orchplugin", None)
    import orchplugin  # type: ignore[import-not-found]

    orchplugin.Journal.log.clear()
    orchplugin.Pulse.outcomes.clear()
    orchplugin.Pulse.finished.clear()
    orchplugin.WritePipe.active = orchplugin.WritePipe.peak = 0
    return orchplugin


def orchestrator(text: str, **kwargs: float) -> Orchestrator:
    return Orchestrator(build(parse_config(textwrap.dedent(text), "test.yml")), **kwargs)


async def test_services_open_before_runs_and_close_after(plugin: object) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services:
            - {id: a, use: Journal}
            - {id: b, use: Journal}
          orchestrator:
            runners:
              - id: first
                run: {id: w, use: WritePipe, params: {journal: a, text: ran}}
        """
    )
    assert await orch.run() == 0
    assert plugin.Journal.log == ["open a", "open b", "ran", "close b", "close a"]  # type: ignore[attr-defined]


async def test_one_time_runners_exit_1_when_one_fails(plugin: object) -> None:
    orch = orchestrator(
        """
        runners:
          - id: good
            run: {id: g, use: ExpressionPipe, params: {expression: 1}}
          - id: bad
            run: {id: b, use: ExpressionPipe, params: {expression: "{{ fail('no') }}"}}
        """
    )
    assert await orch.run() == 1
    assert orch.runners["bad"].stats.failures == 1
    assert orch.runners["good"].stats.runs == 1


async def test_shared_trigger_has_one_timer_and_fires_every_listener(plugin: object) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services: [{id: j, use: Journal}]
          orchestrator:
            runners:
              - id: one
                on: [{id: fast, params: {milliseconds: 50}}]
                run: {id: a, use: WritePipe, params: {journal: j, text: one}}
              - id: two
                on: [fast]
                run: {id: b, use: WritePipe, params: {journal: j, text: two}}
        """
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.32)
    assert orch.scheduler is not None
    assert len(orch.scheduler.schedules) == 1
    orch.request_stop()
    assert await main == 0
    log = plugin.Journal.log  # type: ignore[attr-defined]
    assert log.count("one") == log.count("two") == 6  # at 0.05, 0.10, ... 0.30


async def test_max_concurrent_runs_limits_parallel_runs(plugin: object) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services: [{id: j, use: Journal}]
          orchestrator:
            max_concurrent_runs: 1
            runners:
              - id: a
                run: {id: a, use: WritePipe, params: {journal: j, text: a, sleep: 0.1}}
              - id: b
                run: {id: b, use: WritePipe, params: {journal: j, text: b, sleep: 0.1}}
              - id: c
                run: {id: c, use: WritePipe, params: {journal: j, text: c, sleep: 0.1}}
        """
    )
    assert await orch.run() == 0
    assert plugin.WritePipe.peak == 1  # type: ignore[attr-defined]
    assert sorted(plugin.Journal.log[1:4]) == ["a", "b", "c"]  # type: ignore[attr-defined]


async def test_custom_wall_clock_trigger_fires(
    plugin: object, virtual_clock: VirtualClockLoop
) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services: [{id: j, use: Journal}]
          orchestrator:
            runners:
              - id: wall
                on: [{id: tick, use: WallEvery, params: {seconds: 0.1}}]
                run: {id: w, use: WritePipe, params: {journal: j, text: tick}}
        """,
        wall_clock=virtual_clock.wall,
    )
    main = asyncio.create_task(orch.run())
    started = virtual_clock.time()
    while plugin.Journal.log.count("tick") < 3 and virtual_clock.time() - started < 10:  # type: ignore[attr-defined]  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    orch.request_stop()
    assert await main == 0
    assert plugin.Journal.log.count("tick") == 3  # type: ignore[attr-defined]


async def test_run_once_unknown_runner_names_the_known_ones() -> None:
    orch = orchestrator(
        """
        runners:
          - id: only
            run: {id: p, use: ExpressionPipe, params: {expression: 1}}
        """
    )
    with pytest.raises(ComponentError, match=r"'nope'.*only"):
        await orch.run_once("nope")


async def test_stop_cancels_runs_past_the_shutdown_timeout(plugin: object) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services: [{id: j, use: Journal}]
          orchestrator:
            runners:
              - id: slow
                on: [{id: t, params: {seconds: 60}, use: IntervalTrigger}]
                run: {id: s, use: WritePipe, params: {journal: j, text: done, sleep: 30}}
              - id: starter
                run: {id: x, use: WritePipe, params: {journal: j, text: started, sleep: 30}}
        """,
        shutdown_timeout=0.2,
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.1)
    assert orch.runners["starter"].running
    orch.request_stop()
    assert await asyncio.wait_for(main, 10) == 0
    assert orch.runners["starter"].stats.cancelled == 1
    assert "close j" in plugin.Journal.log  # type: ignore[attr-defined]
    assert "started" not in plugin.Journal.log  # type: ignore[attr-defined]


async def test_event_trigger_fires_with_a_payload_and_hears_runs_finish(plugin: object) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services: [{id: j, use: Journal}]
          orchestrator:
            runners:
              - id: echo
                on: [{id: pulse, use: Pulse, params: {times: 3}}]
                run:
                  id: w
                  use: WritePipe
                  params: {journal: j, text: "n={{ trigger.payload.n }}"}
        """
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.4)
    orch.request_stop()
    assert await main == 0
    assert [x for x in plugin.Journal.log if x.startswith("n=")] == ["n=0", "n=1", "n=2"]  # type: ignore[attr-defined]
    runs = [outcome for fired in plugin.Pulse.outcomes for outcome in fired]  # type: ignore[attr-defined]
    assert [o.run_id for o in runs] == ["echo-1", "echo-2", "echo-3"]
    assert plugin.Pulse.finished == [("echo", "succeeded")] * 3  # type: ignore[attr-defined]


async def test_an_event_fire_on_a_busy_runner_is_refused_with_the_reason(plugin: object) -> None:
    orch = orchestrator(
        """
        open_ticket_ai:
          plugins: [orchplugin]
          services: [{id: j, use: Journal}]
          orchestrator:
            runners:
              - id: slow
                on: [{id: pulse, use: Pulse, params: {times: 2, gap: 0.05}}]
                run: {id: w, use: WritePipe, params: {journal: j, text: x, sleep: 0.3}}
        """
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.5)
    orch.request_stop()
    assert await main == 0
    first, second = (fired[0] for fired in plugin.Pulse.outcomes)  # type: ignore[attr-defined]
    assert first.started
    assert not second.started
    assert "busy" in (second.reason or "")
    assert "slow-1" in (second.reason or "")
