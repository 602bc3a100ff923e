"""Timing arithmetic for time triggers: spread phases, jitter, late and missed fires.

Everything here is a pure function of plain numbers (times on one clock, in seconds), so
every rule is tested with fixed values and no sleeping. The orchestrator's timers
(:mod:`open_ticket_ai.runtime.scheduler`) only read a clock and apply these.

Terms: a trigger's *grid points* are the times ``next_fire_after`` answers. A runner
listening to a trigger fires at ``point + phase + jitter``: ``phase`` is fixed per (trigger,
runner) by ``spread``, ``jitter`` is drawn afresh for each fire and never carried over, so
the schedule never drifts from the grid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "NO_TIMING",
    "GridSchedule",
    "Resolution",
    "Schedulable",
    "Timing",
    "count_fires",
    "overdue",
    "resolve",
    "spread_phase",
    "stable_fraction",
    "timing_of",
]

MAX_SCAN = 2_000
"""How many grid points :func:`resolve` steps over one by one for a trigger without a fast
grid; past this it resolves in several passes (each timer call one more pass), so one pass
never holds the event loop long (a cron trigger's step costs ~50 us: 0.1 s a pass)."""


@dataclass(frozen=True)
class Timing:
    """How a time trigger's fires are placed and judged late.

    A :class:`~open_ticket_ai.core.triggers.base.TimeTrigger` opts in with an
    instance attribute ``timing``; without one it gets :data:`NO_TIMING` (no spread, no
    jitter, late fires run, missed fires are collapsed into one run and counted).
    """

    spread: float = 0.0
    """A window: each runner listening fires at a fixed phase in ``[0, spread)``."""
    jitter: float = 0.0
    """Each fire waits a random ``[0, jitter)`` more; must be less than the interval."""
    max_lateness: float | None = None
    """A fire later than this is skipped (``run.missed``); None: never skipped."""


NO_TIMING = Timing()


def timing_of(trigger: object) -> Timing:
    """The trigger's :class:`Timing`, or :data:`NO_TIMING`."""
    timing = getattr(trigger, "timing", None)
    return timing if isinstance(timing, Timing) else NO_TIMING


def stable_fraction(*parts: str) -> float:
    """A number in ``[0, 1)`` derived from ``parts`` alone: the same in every process and
    on every machine (unlike :func:`hash`, which is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def spread_phase(trigger_id: str, runner_id: str, window: float) -> float:
    """The fixed phase in ``[0, window)`` of ``runner_id``'s fires of ``trigger_id``."""
    return stable_fraction(trigger_id, runner_id) * window if window > 0 else 0.0


class Schedulable(Protocol):
    """What the arithmetic needs of a trigger: its grid, one point at a time."""

    def next_fire_after(self, after: float, start: float) -> float | None: ...


@runtime_checkable
class GridSchedule(Protocol):
    """A trigger that can also jump: find the last grid point at or before a time, and
    count points in a span, without stepping through them (``IntervalTrigger`` does)."""

    def next_fire_after(self, after: float, start: float) -> float | None: ...

    def latest_fire_at_or_before(self, t: float, start: float) -> float | None: ...

    def fires_between(self, after: float, upto: float, start: float) -> int: ...


@dataclass(frozen=True)
class Resolution:
    """What to do when a timer comes due: run ``point`` now (``fire``) or not, how many
    grid points were passed over without a run (``missed``), and the next grid point."""

    fire: bool
    missed: int
    point: float
    following: float | None


def resolve(
    trigger: Schedulable,
    due: float,
    now: float,
    start: float,
    *,
    lateness: float,
    max_lateness: float | None,
) -> Resolution:
    """Decide a timer that came due for the grid point ``due`` and was handled at ``now``.

    ``now`` is on the grid's clock with the runner's phase taken off; ``lateness`` is how
    late the handling is against the fire's own time (jitter included). When later grid
    points have passed too (a blocked loop, a suspend, a clock step), they collapse into the
    latest one: at most one run, the rest counted as missed. That run is skipped too when
    it is later than ``max_lateness``.
    """
    point = due
    earlier = 0
    following = trigger.next_fire_after(due, start)
    if following is not None and following <= now:
        point, earlier = _latest(trigger, due, following, now, start)
        following = trigger.next_fire_after(point, start)
        lateness = now - point
    if max_lateness is not None and lateness > max_lateness:
        return Resolution(False, earlier + 1, point, following)
    return Resolution(True, earlier, point, following)


def _latest(
    trigger: Schedulable, due: float, following: float, now: float, start: float
) -> tuple[float, int]:
    """The latest grid point at or before ``now`` and how many points precede it from
    ``due`` on (``due`` included)."""
    if isinstance(trigger, GridSchedule):
        latest = trigger.latest_fire_at_or_before(now, start)
        if latest is not None and latest >= following:
            return latest, trigger.fires_between(due, latest, start)
    point, earlier = following, 1
    for _ in range(MAX_SCAN):
        nxt = trigger.next_fire_after(point, start)
        if nxt is None or nxt > now:
            break
        point, earlier = nxt, earlier + 1
    return point, earlier


def count_fires(trigger: Schedulable, after: float, upto: float, start: float) -> int:
    """How many grid points lie in ``(after, upto]`` (stepping at most :data:`MAX_SCAN`)."""
    if upto <= after:
        return 0
    if isinstance(trigger, GridSchedule):
        return trigger.fires_between(after, upto, start)
    count = 0
    point = after
    while count < MAX_SCAN:
        nxt = trigger.next_fire_after(point, start)
        if nxt is None or nxt > upto:
            break
        point, count = nxt, count + 1
    return count


def overdue(
    trigger: Schedulable, last: float, now: float, start: float, *, allowed: float | None
) -> Resolution | None:
    """After a restart: what to do about the grid points that passed while we were down.

    ``last`` is the runner's last fire before the restart and ``now`` the time of the new
    start (both on the grid's clock, phase taken off). None when no point passed since
    ``last`` (a quick restart waits for the next point). Else the passed points collapse
    into at most one catch-up run, of the latest, when it is late by at most ``allowed``
    (``-inf``: no catch-up; None: any lateness); the rest are counted missed.
    """
    first = trigger.next_fire_after(last, start)
    if first is None or first > now:
        return None
    return resolve(trigger, first, now, start, lateness=now - first, max_lateness=allowed)
