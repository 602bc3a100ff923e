"""Scheduler: every timer of the orchestrator, and what happens when one comes due.

A :class:`Schedule` is one armed timer of a time trigger, firing its runners at one phase; the
:class:`Scheduler` owns them all. The decisions (spread, jitter, late and missed fires, the
catch-up after a restart) are the pure arithmetic of :mod:`open_ticket_ai.core.triggers.timing`;
this module only reads clocks, keeps each schedule's next grid point, and sets loop timers.
:meth:`Schedule.advance` is the one function that decides what a due timer does.

With a state file (``orchestrator.state_path``):

- a trigger armed again with the same settings keeps its grid (its persisted start), so its
  phase survives restarts, and a restart within an interval waits for the next grid point;
- a runner whose trigger fired while we were down runs at most ONE catch-up, and only when
  the latest missed point is no older than the runner's ``starting_deadline`` (default: no
  catch-up); a trigger that fires at start (``run_on_start``) catches up whatever the age;
- every fire that passed without a run is counted and published (``run.missed``).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from open_ticket_ai.core.pipes.run import TriggerRef
from open_ticket_ai.core.triggers.base import TimeTrigger
from open_ticket_ai.core.triggers.timing import Timing, overdue, resolve, spread_phase, timing_of
from open_ticket_ai.runtime.events import ClockStepped, Event, RunCatchUp, ScheduleReset
from open_ticket_ai.runtime.runner import PipeRunner
from open_ticket_ai.runtime.state import StateStore

__all__ = ["WALL_CLOCK_STEP", "Schedule", "Scheduler", "signature"]

WALL_CLOCK_STEP = 15.0
"""Wall-clock schedules sleep at most this long before re-checking the clock (well inside
the default ``max_lateness`` of a minute, so a fire crossed early in a sleep is not late)."""
STEP_REPORTED = 60.0
"""A wall clock that moved this much more (or less) than the monotonic one was stepped."""
WILD_STEP = 3 * 3600.0
"""Steps up to this size are treated as Debian's cron treats daylight-saving changes; larger
ones as its "wild" jumps (a clock set right): the schedule goes on from the new time."""


class Schedule:
    """A time trigger's timer for some of its runners, at one fixed phase.

    Runners fire at ``point + phase + jitter`` for each grid point of the trigger. When the
    timer is handled later than the trigger's ``max_lateness``, or after later grid points
    have passed too, :func:`~open_ticket_ai.core.triggers.timing.resolve` decides: at
    most one run, the passed-over points reported to ``on_missed``. The next point is always
    the trigger's next grid point after the last one handled: nothing drifts.

    A monotonic schedule sets one ``loop.call_at`` per fire. A wall-clock schedule sleeps in
    steps of at most ``wall_step`` and re-checks ``clock``, so a clock step or a suspend
    fires what is due promptly, once.
    """

    __slots__ = (
        "_loop",
        "checked",
        "clock",
        "due",
        "handle",
        "jitter",
        "key",
        "max_lateness",
        "on_missed",
        "on_step",
        "phase",
        "point",
        "probe",
        "ref",
        "rng",
        "runners",
        "start",
        "trigger",
        "wall",
        "wall_step",
        "wall_time",
    )

    def __init__(
        self,
        key: str,
        trigger: TimeTrigger[Any],
        runners: Sequence[PipeRunner],
        *,
        timing: Timing,
        phase: float,
        start: float,
        on_missed: Callable[[Schedule, int, float], None],
        clock: Callable[[], float] | None = None,
        wall_step: float = WALL_CLOCK_STEP,
        probe: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        wall_time: Callable[[], float] = time.time,
        on_step: Callable[[float], None] | None = None,
    ) -> None:
        self.key = key
        self.trigger = trigger
        self.runners = tuple(runners)
        self.ref = TriggerRef(trigger.id)
        self.phase = phase
        self.start = start
        self.jitter = timing.jitter
        self.max_lateness = timing.max_lateness
        self.wall = trigger.clock == "wall"
        self.clock = clock
        self.wall_step = wall_step
        self.on_missed = on_missed
        self.probe = probe
        self.rng = rng if rng is not None else random.Random()
        self.wall_time = wall_time
        """The wall clock a monotonic fire's due time is told in (for the ledger)."""
        self.point: float | None = None
        """The grid point waited for; None when the trigger will not fire again."""
        self.due = 0.0
        """When that point fires here: ``point + phase + jitter``."""
        self.handle: asyncio.TimerHandle | None = None
        self.on_step = on_step
        """Told of a wall-clock step this schedule noticed (its size in seconds)."""
        self.checked = (0.0, 0.0)
        """The loop's time and the wall clock when the schedule last went to sleep."""

    def arm(self, point: float | None) -> None:
        """Wait for grid point ``point`` (None: never)."""
        self._loop = asyncio.get_running_loop()
        if self.clock is None:
            self.clock = self._loop.time
        self.place(point)
        self._wait()

    def cancel(self) -> None:
        """Stop: the pending timer never runs."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def place(self, point: float | None) -> None:
        """Make ``point`` the next grid point, drawing its jitter."""
        self.point = point
        if point is not None:
            due = point + self.phase
            if self.jitter:
                due += self.rng.random() * self.jitter
            self.due = due

    def advance(self, now: float, *, however_late: bool = False) -> tuple[float | None, float, int]:
        """Handle the point that came due, at ``now``, and place the next one.

        Returns the grid point to run now (None: no run), how late the handling is against
        the first point's own time, and how many fires were missed. ``however_late``: the
        latest point runs whatever its lateness (what a forward clock step skipped). Only
        arithmetic: tested with numbers.
        """
        point = self.point
        assert point is not None
        lateness = now - self.due
        following = self.trigger.next_fire_after(point, self.start)
        max_lateness = None if however_late else self.max_lateness
        # A later point has passed only once its latest jittered time has: with a jitter
        # close to the interval, a fire handled a little late must not count the next as
        # missed (it is placed, and fires at once if its own time has come).
        passed = now - self.phase - self.jitter
        if (max_lateness is None or lateness <= max_lateness) and (
            following is None or following > passed
        ):
            self.place(following)
            return point, lateness, 0
        decided = resolve(
            self.trigger,
            point,
            passed,
            self.start,
            lateness=lateness,
            max_lateness=max_lateness,
        )
        self.place(decided.following)
        return (decided.point if decided.fire else None), lateness, decided.missed

    def _stepped_back(self, now: float, step: float) -> None:
        """The wall clock went back by ``-step``: as Debian's cron, a fixed-time fire that
        already happened waits for its next time (within 3 hours, a daylight-saving change);
        otherwise the schedule goes on from the new time, not silent until the clock catches
        up with the point it waited for."""
        if self.trigger.fixed_time and -step <= WILD_STEP:
            return
        self.place(self.trigger.next_fire_after(now - self.phase, self.start))

    def _wait(self) -> None:
        if self.point is None:
            self.handle = None
        elif self.wall:
            assert self.clock is not None
            wall = self.clock()
            self.checked = (self._loop.time(), wall)
            delay = min(max(self.due - wall, 0.0), self.wall_step)
            self.handle = self._loop.call_later(delay, self._on_due)
        else:
            self.handle = self._loop.call_at(self.due, self._on_due)

    def _on_due(self) -> None:
        assert self.clock is not None
        now = self.clock()
        stepped = 0.0
        if self.wall:
            slept_at, wall_then = self.checked
            stepped = (now - wall_then) - (self._loop.time() - slept_at)
            if abs(stepped) <= STEP_REPORTED:
                stepped = 0.0
            else:
                if self.on_step is not None:
                    self.on_step(stepped)
                if stepped < 0:
                    self._stepped_back(now, stepped)
            if now < self.due:
                self._wait()  # woke early, or the clock was stepped back: the point stays due
                return
        # A forward step of up to 3 hours: the latest point it skipped runs once, however
        # late, as Debian's cron runs what a daylight-saving change skipped; after a larger
        # jump only what is due now runs.
        point, lateness, missed = self.advance(now, however_late=0 < stepped <= WILD_STEP)
        if missed:
            self.on_missed(self, missed, lateness)
        if point is not None:
            if self.probe is not None:
                self.probe(lateness if not missed else now - self.phase - point)
            ref = self.ref
            due = point + self.phase
            # The time the fire was due, as a POSIX time for the ledger and people.
            scheduled = due if self.wall else self.wall_time() - (now - due)
            for runner in self.runners:
                runner.fire(ref, scheduled)
        self._wait()


def signature(trigger: TimeTrigger[Any]) -> str:
    """What must not change for a persisted grid to still apply: class and params."""
    kind = type(trigger)
    return f"{kind.__module__}:{kind.__qualname__} {trigger.params.model_dump_json()}"


@dataclass
class Scheduler:
    """Owns every timer of one orchestrator run: arms each time trigger (one
    :class:`Schedule` per phase), restores grids and catches up from the state file, reports
    missed fires, answers when each runner fires next, and cancels everything at shutdown."""

    started_at: float
    """The loop's (monotonic) time at start."""
    wall_clock: Callable[[], float]
    wall_step: float
    on_missed: Callable[[Schedule, int, float], None]
    rng: random.Random
    probe: Callable[[float], None] | None = None
    state: StateStore | None = None
    report: Callable[[Event], None] | None = None
    """Where the scheduler's own events go (``schedule.reset``)."""

    def __post_init__(self) -> None:
        self.wall_at_start = self.wall_clock()
        self._caught_up: set[str] = set()
        self._last_step = (-math.inf, 0.0)
        self.schedules: dict[str, Schedule] = {}
        """One per time trigger; with ``spread``, one per (trigger, runner)."""

    def cancel(self) -> None:
        """Stop every timer: no fire after this."""
        for schedule in self.schedules.values():
            schedule.cancel()
        self.schedules.clear()

    def _stepped(self, step: float) -> None:
        """One ``clock.stepped`` per step, however many wall-clock schedules noticed it."""
        now = asyncio.get_running_loop().time()
        seen_at, seen = self._last_step
        if now - seen_at <= 2 * self.wall_step and abs(step - seen) <= STEP_REPORTED:
            return
        self._last_step = (now, step)
        if self.report is not None:
            self.report(ClockStepped(step=step))

    def next_fires(self, now: float, now_wall: float) -> dict[str, float]:
        """Per runner, the POSIX time of its next fire (``now`` is the loop's time)."""
        found: dict[str, float] = {}
        for schedule in self.schedules.values():
            if schedule.point is None:
                continue
            due = schedule.due if schedule.wall else now_wall + (schedule.due - now)
            for runner in schedule.runners:
                if runner.id not in found or due < found[runner.id]:
                    found[runner.id] = due
        return found

    def arm(self, trigger: TimeTrigger[Any], listeners: Sequence[PipeRunner]) -> list[Schedule]:
        """Arm ``trigger`` for ``listeners``: one schedule, or one per runner with spread."""
        timing = timing_of(trigger)
        wall = trigger.clock == "wall"
        now = self.wall_at_start if wall else self.started_at
        to_wall = 0.0 if wall else self.wall_at_start - self.started_at
        start, restored = now, False
        if self.state is not None:
            sig = signature(trigger)
            anchor = self.state.anchor(trigger.id, sig)
            if anchor is not None and anchor > now + to_wall:
                # Restored, this grid would stay silent until the clock caught up.
                if self.report is not None:
                    self.report(ScheduleReset(trigger=trigger.id, ahead=anchor - now - to_wall))
                anchor = None
            if anchor is None:
                self.state.set_anchor(trigger.id, sig, now + to_wall)
            else:
                start, restored = anchor - to_wall, True
        if timing.spread > 0:
            groups = [
                (f"{trigger.id}/{r.id}", [r], spread_phase(trigger.id, r.id, timing.spread))
                for r in listeners
            ]
        else:
            groups = [(trigger.id, list(listeners), 0.0)]
        schedules = []
        for key, runners, phase in groups:
            schedule = Schedule(
                key,
                trigger,
                runners,
                timing=timing,
                phase=phase,
                start=start,
                on_missed=self.on_missed,
                clock=self.wall_clock if wall else None,
                wall_step=self.wall_step,
                probe=self.probe,
                rng=self.rng,
                wall_time=self.wall_clock,
                on_step=self._stepped,
            )
            if restored:
                schedule.arm(trigger.next_fire_after(now - phase, start))
                self._catch_up(schedule, now, to_wall)
            else:
                schedule.arm(trigger.first_fire(start))
            schedules.append(schedule)
            self.schedules[key] = schedule
        return schedules

    def _catch_up(self, schedule: Schedule, now: float, to_wall: float) -> None:
        assert self.state is not None
        trigger = schedule.trigger
        fires_at_start = trigger.first_fire(schedule.start) == schedule.start
        for runner in schedule.runners:
            record = self.state.last_fire(runner.id, trigger.id)
            if record is None:
                continue
            if fires_at_start:
                allowed: float | None = None
            elif runner.spec.starting_deadline is not None:
                allowed = runner.spec.starting_deadline
            else:
                allowed = -math.inf  # no catch-up
            last = record.fired_at - to_wall - schedule.phase
            decided = overdue(trigger, last, now - schedule.phase, schedule.start, allowed=allowed)
            if decided is None:
                continue
            late = now - schedule.phase - decided.point
            missed = decided.missed
            if decided.fire and runner.id in self._caught_up:
                missed += 1  # one catch-up per runner, whatever its triggers
            elif decided.fire:
                self._caught_up.add(runner.id)
                runner.bus.publish(
                    RunCatchUp(runner=runner.id, trigger=trigger.id, late=late, missed=missed)
                )
                runner.fire(
                    TriggerRef(trigger.id), scheduled=decided.point + schedule.phase + to_wall
                )
            if missed:
                runner.note_missed(trigger.id, missed, late, reason="downtime")
