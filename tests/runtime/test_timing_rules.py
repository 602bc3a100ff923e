"""Timing rules in a running orchestrator: spread, missed fires, clock steps, overlap,
timeouts. The arithmetic itself is tested in test_timing.py. Tests on the virtual clock
(tests/support/virtual_clock.py) get exact times; those that block the loop or watch it
from a thread run on a real loop, with generous bounds."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from tests.runtime.timing_pipes import SleepPipe
from tests.support.virtual_clock import VirtualClockLoop

from open_ticket_ai import build, parse_config
from open_ticket_ai.core.triggers.timing import spread_phase
from open_ticket_ai.runtime.orchestrator import Orchestrator

PIPES = "tests.runtime.timing_pipes"


@pytest.fixture(autouse=True)
def _clean() -> None:
    SleepPipe.log.clear()


@pytest.fixture
def virtual_timing(virtual_clock: VirtualClockLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test on the virtual clock, SleepPipe logging the loop's time (it logs
    ``time.monotonic()``, which the virtual clock does not move)."""
    loop_time = SimpleNamespace(monotonic=virtual_clock.time, sleep=time.sleep)
    monkeypatch.setattr(f"{PIPES}.time", loop_time)


def orchestrator(text: str, **kwargs: object) -> Orchestrator:
    config = textwrap.dedent(text).replace("PIPES", PIPES)
    return Orchestrator(build(parse_config(config, "test.yml")), **kwargs)  # type: ignore[arg-type]


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``check()``, for ``within`` seconds of the loop's (maybe virtual) time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def events_named(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if getattr(r, "event", None) == name]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("virtual_timing")
async def test_spread_gives_each_runner_of_a_shared_trigger_its_own_phase() -> None:
    orch = orchestrator(
        """
        runners:
          - id: a
            on: [{id: t, params: {seconds: 0.3, spread: true}}]
            run: {id: p, use: "PIPES:SleepPipe"}
          - id: b
            on: [t]
            run: {id: p, use: "PIPES:SleepPipe"}
          - id: c
            on: [t]
            run: {id: p, use: "PIPES:SleepPipe"}
        """
    )
    main = asyncio.create_task(orch.run())
    await until(lambda: len(SleepPipe.log) >= 2 * 9)
    assert orch.scheduler is not None
    timers = dict(orch.scheduler.schedules)
    orch.request_stop()
    assert await main == 0
    assert sorted(timers) == ["t/a", "t/b", "t/c"]
    log = SleepPipe.log
    started = {r: [at for who, what, at in log if who == r and what == "start"] for r in "abc"}
    for runner, times in started.items():
        phase = spread_phase("t", runner, 0.3)
        assert timers[f"t/{runner}"].phase == phase
        for at in times:  # on the runner's own grid: start + k * 0.3 + phase
            offset = (at - orch.started_at - phase) % 0.3
            assert min(offset, 0.3 - offset) < 1e-9


async def test_a_blocked_loop_collapses_missed_fires_into_one_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        runners:
          - id: fast
            on: [{id: t, params: {milliseconds: 50}}]
            run: {id: p, use: "PIPES:SleepPipe"}
        """
    )
    main = asyncio.create_task(orch.run())
    await until(lambda: len(SleepPipe.log) >= 2)
    time.sleep(0.6)  # noqa: ASYNC251 (blocks the loop: about 12 fires pass)
    runs_before = orch.runners["fast"].stats.runs
    await asyncio.sleep(0.02)
    orch.request_stop()
    assert await main == 0
    stats = orch.runners["fast"].stats
    assert stats.missed >= 6
    assert stats.runs - runs_before <= 1  # one run for the whole stall
    missed = events_named(caplog, "run.missed")
    assert missed
    assert missed[0]["count"] == stats.missed
    assert missed[0]["late_ms"] >= 300  # type: ignore[operator]
    summary = events_named(caplog, "runner.summary")[0]
    assert summary["missed"] == stats.missed


class FakeWallClock:
    """A wall clock the test sets: steps forward (a suspend) and back (an NTP correction)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.usefixtures("virtual_timing")
async def test_a_wall_clock_step_fires_what_is_due_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    clock = FakeWallClock(3600.0 * 1000 + 10)
    orch = orchestrator(
        """
        runners:
          - id: hourly
            on: [{id: h, use: "PIPES:WallEvery", params: {seconds: 3600}}]
            run: {id: p, use: "PIPES:SleepPipe"}
        """,
        wall_clock=clock,
        wall_step=0.02,
    )
    runner = orch.runners["hourly"]
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.2)
    assert runner.stats.runs == 0
    clock.now += 3 * 3600  # resumed three hours later: 3 hourly points passed
    await until(lambda: runner.stats.runs == 1)
    await asyncio.sleep(0.2)
    assert runner.stats.runs == 1
    assert runner.stats.missed == 2
    clock.now -= 2 * 3600  # stepped back: nothing fires again
    await asyncio.sleep(0.2)
    assert runner.stats.runs == 1
    clock.now = 3600.0 * 1004 + 1  # the next point comes due: it fires, once
    await until(lambda: runner.stats.runs == 2)
    await asyncio.sleep(0.2)
    orch.request_stop()
    assert await main == 0
    assert runner.stats.runs == 2


class SteppedWall:
    """A wall clock running with the (virtual) loop, ``offset`` seconds off it: add to the
    offset to step it."""

    def __init__(self, at: datetime) -> None:
        self.base = at.timestamp() - asyncio.get_running_loop().time()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base + asyncio.get_running_loop().time() + self.offset

    def at(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)


def cron_orchestrator(cron: str, wall: SteppedWall) -> Orchestrator:
    return orchestrator(
        f"""
        runners:
          - id: cron
            on: [{{id: c, use: CronTrigger, params: {{cron: "{cron}", timezone: UTC}}}}]
            run: {{id: p, use: "PIPES:SleepPipe"}}
        """,
        wall_clock=wall,
    )


@pytest.mark.usefixtures("virtual_timing")
async def test_a_backward_step_does_not_silence_a_frequent_cron_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    wall = SteppedWall(datetime(2026, 6, 1, 10, 0, 0, tzinfo=UTC))
    orch = cron_orchestrator("*/5 * * * * *", wall)
    runner = orch.runners["cron"]
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(12)
    before = runner.stats.runs
    assert before == 2
    wall.offset -= 2 * 3600  # an NTP correction: two hours back
    await asyncio.sleep(30)
    orch.request_stop()
    assert await main == 0
    assert runner.stats.runs - before >= 5  # it goes on every 5 s from the new time
    [stepped] = events_named(caplog, "clock.stepped")
    assert -7210 < stepped["step_s"] < -7190  # type: ignore[operator]


@pytest.mark.usefixtures("virtual_timing")
async def test_a_forward_step_over_a_fixed_time_runs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    wall = SteppedWall(datetime(2026, 6, 1, 10, 0, 0, tzinfo=UTC))
    orch = cron_orchestrator("30 10 * * *", wall)
    runner = orch.runners["cron"]
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(60)
    wall.offset += 3600  # 10:01 -> 11:01, over 10:30
    await asyncio.sleep(120)
    orch.request_stop()
    assert await main == 0
    assert runner.stats.runs == 1  # Debian runs it; a late fire would be counted missed
    assert runner.stats.missed == 0
    assert len(events_named(caplog, "clock.stepped")) == 1


@pytest.mark.usefixtures("virtual_timing")
@pytest.mark.parametrize(
    ("back", "again"),
    [pytest.param(3600, 0, id="1h-like-dst"), pytest.param(5 * 3600, 1, id="5h-wild")],
)
async def test_a_backward_step_after_a_fixed_time_ran_follows_debian(
    back: float, again: int
) -> None:
    wall = SteppedWall(datetime(2026, 6, 1, 10, 29, 0, tzinfo=UTC))
    orch = cron_orchestrator("30 10 * * *", wall)
    runner = orch.runners["cron"]
    main = asyncio.create_task(orch.run())
    await until(lambda: runner.stats.runs == 1, within=120)
    await asyncio.sleep(60)
    wall.offset -= back  # back before 10:30
    await asyncio.sleep(back + 120)  # the clock passes 10:30 again
    orch.request_stop()
    assert await main == 0
    # Up to 3 h back is a daylight-saving change to Debian: what ran does not run again; a
    # larger step is the clock set right, and the schedule goes on from the new time.
    assert runner.stats.runs == 1 + again


@pytest.mark.usefixtures("virtual_timing")
async def test_queue_one_keeps_one_fire_and_runs_it_right_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        runners:
          - id: q
            overlap: queue_one
            on: [{id: hourly, params: {hours: 1}}]
            run: {id: p, use: "PIPES:SleepPipe", params: {seconds: 0.2}}
        """
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.05)
    first, second, third = (orch.fire("hourly")[0] for _ in range(3))
    assert first.started
    assert not second.started
    assert (second.reason or "").startswith("queued")
    assert not third.started
    assert "busy" in (third.reason or "")
    await until(lambda: len(SleepPipe.log) >= 4)
    orch.request_stop()
    assert await main == 0
    (_, _, end1), (_, what, start2) = SleepPipe.log[1], SleepPipe.log[2]
    assert what == "start"
    assert start2 == end1  # at the same instant
    assert len(events_named(caplog, "run.queued")) == 1
    assert orch.runners["q"].stats.runs == 2


@pytest.mark.usefixtures("virtual_timing")
async def test_queue_one_from_a_timer_skips_further_fires(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        runners:
          - id: q
            overlap: queue_one
            on: [{id: t, params: {milliseconds: 100}}]
            run: {id: p, use: "PIPES:SleepPipe", params: {seconds: 0.35}}
        """
    )
    main = asyncio.create_task(orch.run())
    await until(lambda: sum(1 for _, what, _ in SleepPipe.log if what == "end") >= 2)
    orch.request_stop()
    assert await main == 0
    starts = [at for _, what, at in SleepPipe.log if what == "start"]
    ends = [at for _, what, at in SleepPipe.log if what == "end"]
    assert starts[1] == ends[0]  # the queued fire ran as soon as the first run ended
    skipped = events_named(caplog, "run.skipped")
    assert skipped
    assert all(e["reason"] in ("queue_full", "stopping") for e in skipped)


@pytest.mark.usefixtures("virtual_timing")
async def test_a_run_past_its_timeout_is_cancelled_and_the_runner_freed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        runners:
          - id: slow
            timeout: 100ms
            on: [{id: hourly, params: {hours: 1}}]
            run: {id: p, use: "PIPES:SleepPipe", params: {seconds: 30}}
        """
    )
    runner = orch.runners["slow"]
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.02)
    assert orch.fire("hourly")[0].started
    await until(lambda: not runner.running)
    assert runner.stats.timeouts == 1
    assert runner.stats.failures == 0
    assert runner.last_result is not None
    assert "timed out after 100ms" in runner.last_result.message
    assert orch.fire("hourly")[0].started  # free again
    orch.request_stop()
    assert await main == 0
    assert events_named(caplog, "run.timeout")[0]["timeout_ms"] == 100
    assert not events_named(caplog, "run.cancelled")[:1] or runner.stats.cancelled == 1


@pytest.mark.usefixtures("virtual_timing")
async def test_a_run_ignoring_its_timeout_is_reported_stuck_and_abandoned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        runners:
          - id: stubborn
            timeout: 100ms
            on: [{id: hourly, params: {hours: 1}}]
            run:
              id: p
              use: "PIPES:SleepPipe"
              params: {seconds: 30, ignore_cancel_for: 1.5}
        """,
        cancel_timeout=0.2,
    )
    runner = orch.runners["stubborn"]
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.02)
    assert orch.fire("hourly")[0].started
    await until(lambda: runner.stats.stuck == 1, within=5)
    assert not runner.running
    assert len(runner.abandoned) == 1
    stuck = events_named(caplog, "run.stuck")
    assert stuck[0]["run_id"] == "stubborn-1"
    assert orch.fire("hourly")[0].started  # the schedule goes on without it
    await until(lambda: runner.stats.stuck == 2, within=5)
    await until(lambda: not runner.abandoned, within=5)  # the strays ended by themselves
    orch.request_stop()
    assert await main == 0
    assert runner.stats.timeouts == 2
    assert not events_named(caplog, "run.finished")  # a stray's late end is no success


@pytest.mark.usefixtures("virtual_timing")
async def test_items_and_steps_after_the_run_deadline_are_skipped_counted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        runners:
          - id: slow
            deadline: 4m30s
            on: [{id: hourly, params: {hours: 1}}]
            run:
              id: all
              steps:
                - id: each
                  for_each: "{{ range(10) | list }}"
                  use: "PIPES:SleepPipe"
                  params: {seconds: 60}
                - id: after
                  use: "PIPES:SleepPipe"
        """
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.02)
    assert orch.fire("hourly")[0].started
    runner = orch.runners["slow"]
    await until(lambda: runner.last_result is not None, within=3600)
    orch.request_stop()
    assert await main == 0
    # Items 0-4 ran 60 s each; item 5 would begin after the deadline: it and the rest do not,
    # nor does the step after the loop.
    assert [end for _, end, _ in SleepPipe.log].count("end") == 5
    [failed] = events_named(caplog, "run.failed")
    assert failed["error"] == "passed its deadline of 4m30s: 6 steps or items not started"
    each = runner.last_result
    assert each is not None
    assert each.failed
    assert runner.stats.failures == 1


@pytest.mark.usefixtures("virtual_timing")
async def test_a_run_within_its_deadline_is_untouched_and_false_turns_it_off() -> None:
    orch = orchestrator(
        """
        runners:
          - id: quick
            on: [{id: hourly, params: {hours: 1}}]
            run: {id: p, use: "PIPES:SleepPipe", params: {seconds: 500}}
          - id: unbounded
            deadline: false
            on: [hourly]
            run:
              id: all
              steps:
                - {id: a, use: "PIPES:SleepPipe", params: {seconds: 900}}
                - {id: b, use: "PIPES:SleepPipe"}
        """
    )
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.02)
    orch.fire("hourly")
    await until(lambda: len(SleepPipe.log) == 6, within=3600)
    orch.request_stop()
    assert await main == 0
    assert orch.runners["quick"].last_result.succeeded  # type: ignore[union-attr]
    assert orch.runners["unbounded"].last_result.succeeded  # type: ignore[union-attr]


async def test_the_watchdog_names_the_runner_and_step_blocking_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    orch = orchestrator(
        """
        orchestrator:
          watchdog: 200ms
          runners:
            - id: blocker
              run:
                id: outer
                steps:
                  - {id: culprit, use: "PIPES:SleepPipe", params: {block: 0.8}}
        """
    )
    assert await orch.run() == 0
    blocked = events_named(caplog, "loop.blocked")
    assert len(blocked) == 1  # once per blocked stretch
    assert blocked[0]["runner"] == "blocker"
    assert str(blocked[0]["step"]).endswith("steps[0]")
    assert "timing_pipes.py" in str(blocked[0]["where"])
    assert blocked[0]["blocked_ms"] >= 200  # type: ignore[operator]
