"""Schedule: one armed timer of a time trigger, firing its runners at one phase.

The decisions (spread, jitter, late and missed fires) are the pure arithmetic of
:mod:`open_ticket_ai.core.triggers.timing`; this module only reads a clock, keeps the
next grid point, and sets loop timers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from open_ticket_ai.core.pipes.run import TriggerRef
from open_ticket_ai.core.triggers.base import TimeTrigger
from open_ticket_ai.core.triggers.timing import Timing, resolve
from open_ticket_ai.runtime.runner import PipeRunner

__all__ = ["WALL_CLOCK_STEP", "Schedule"]

WALL_CLOCK_STEP = 60.0
"""Wall-clock schedules sleep at most this long before re-checking the clock."""


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
        "clock",
        "due",
        "handle",
        "jitter",
        "key",
        "max_lateness",
        "on_missed",
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
        self.point: float | None = None
        """The grid point waited for; None when the trigger will not fire again."""
        self.due = 0.0
        """When that point fires here: ``point + phase + jitter``."""
        self.handle: asyncio.TimerHandle | None = None

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

    def advance(self, now: float) -> tuple[float | None, float, int]:
        """Handle the point that came due, at ``now``, and place the next one.

        Returns the grid point to run now (None: no run), how late the handling is against
        the first point's own time, and how many fires were missed. Only arithmetic: tested
        with numbers.
        """
        point = self.point
        assert point is not None
        lateness = now - self.due
        following = self.trigger.next_fire_after(point, self.start)
        max_lateness = self.max_lateness
        if (max_lateness is None or lateness <= max_lateness) and (
            following is None or following + self.phase > now
        ):
            self.place(following)
            return point, lateness, 0
        decided = resolve(
            self.trigger,
            point,
            now - self.phase,
            self.start,
            lateness=lateness,
            max_lateness=max_lateness,
        )
        self.place(decided.following)
        return (decided.point if decided.fire else None), lateness, decided.missed

    def _wait(self) -> None:
        if self.point is None:
            self.handle = None
        elif self.wall:
            assert self.clock is not None
            delay = min(max(self.due - self.clock(), 0.0), self.wall_step)
            self.handle = self._loop.call_later(delay, self._on_due)
        else:
            self.handle = self._loop.call_at(self.due, self._on_due)

    def _on_due(self) -> None:
        assert self.clock is not None
        now = self.clock()
        if self.wall and now < self.due:
            self._wait()  # woke early, or the clock was stepped back: the point stays due
            return
        point, lateness, missed = self.advance(now)
        if missed:
            self.on_missed(self, missed, lateness)
        if point is not None:
            if self.probe is not None:
                self.probe(lateness if not missed else now - self.phase - point)
            ref = self.ref
            due = point + self.phase
            # The time the fire was due, as a POSIX time for the ledger and people.
            scheduled = due if self.wall else time.time() - (now - due)
            for runner in self.runners:
                runner.fire(ref, scheduled)
        self._wait()
