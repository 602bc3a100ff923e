"""Arming time triggers: one schedule per phase, restored from the state file when there is one.

With a state file (``orchestrator.state_path``):

- a trigger armed again with the same settings keeps its grid (its persisted start), so its
  phase survives restarts, and a restart within an interval waits for the next grid point;
- a runner whose trigger fired while we were down runs at most ONE catch-up, and only when
  the latest missed point is no older than the runner's ``starting_deadline`` (default: no
  catch-up); a trigger that fires at start (``run_on_start``) catches up whatever the age;
- every fire that passed without a run is counted and logged (``run.missed``).

The arithmetic is :func:`~open_ticket_ai.core.triggers.timing.overdue`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from open_ticket_ai.core.pipes.run import TriggerRef
from open_ticket_ai.core.triggers.base import TimeTrigger
from open_ticket_ai.core.triggers.timing import overdue, spread_phase, timing_of
from open_ticket_ai.runtime.events import RunCatchUp
from open_ticket_ai.runtime.runner import PipeRunner
from open_ticket_ai.runtime.schedule import Schedule
from open_ticket_ai.runtime.state import StateStore

__all__ = ["Armer", "signature"]


def signature(trigger: TimeTrigger[Any]) -> str:
    """What must not change for a persisted grid to still apply: class and params."""
    kind = type(trigger)
    return f"{kind.__module__}:{kind.__qualname__} {trigger.params.model_dump_json()}"


@dataclass
class Armer:
    """Builds and arms the schedules of time triggers for one orchestrator run."""

    started_at: float
    """The loop's (monotonic) time at start."""
    wall_clock: Callable[[], float]
    wall_step: float
    on_missed: Callable[[Schedule, int, float], None]
    rng: random.Random
    probe: Callable[[float], None] | None = None
    state: StateStore | None = None

    def __post_init__(self) -> None:
        self.wall_at_start = self.wall_clock()
        self._caught_up: set[str] = set()

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
            )
            if restored:
                schedule.arm(trigger.next_fire_after(now - phase, start))
                self._catch_up(schedule, now, to_wall)
            else:
                schedule.arm(trigger.first_fire(start))
            schedules.append(schedule)
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
