"""IntervalTrigger: fires every interval on a fixed grid."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from open_ticket_ai import Duration, ParamsModel, TimeTrigger
from open_ticket_ai.core.durations import parse_duration
from open_ticket_ai.core.triggers.timing import Timing

__all__ = ["IntervalParams", "IntervalTrigger"]

MIN_INTERVAL = 0.001
"""The shortest interval: one millisecond (shorter would busy-loop the event loop)."""
MAX_INTERVAL = 100 * 365.25 * 86400.0
"""The longest interval: a hundred years (longer is a typo, and soon not a finite time)."""

_UNIT_SECONDS = {
    "milliseconds": 0.001,
    "seconds": 1.0,
    "minutes": 60.0,
    "hours": 3600.0,
    "days": 86400.0,
}


class IntervalParams(ParamsModel):
    """``milliseconds``/``seconds``/``minutes``/``hours``/``days`` (summed), or ``interval``."""

    milliseconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    minutes: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    hours: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    days: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    interval: Duration | None = Field(default=None, gt=0, allow_inf_nan=False)
    run_on_start: bool = False
    offset: Duration = Field(default=0.0, ge=0)
    """Shifts the grid: fires at ``start + offset + k * interval``."""
    spread: bool | float = False
    """``true`` or a window: each runner listening fires at a fixed phase in the window (the
    interval for ``true``), a stable hash of the trigger and runner ids."""
    jitter: Duration = Field(default=0.0, ge=0)
    """Each fire waits a random ``[0, jitter)`` more; never carried over to the next."""
    max_lateness: Duration | None = Field(default=None, gt=0)
    """A fire later than this is skipped (``run.missed``); default one interval, at least 1s."""

    @field_validator("spread", mode="before")
    @classmethod
    def _spread(cls, value: Any) -> bool | float:
        if isinstance(value, bool):
            return value
        seconds = parse_duration(value)
        if seconds < 0:
            raise ValueError("spread must be true, false or a duration of 0 or more")
        return seconds

    @model_validator(mode="after")
    def _one_form(self) -> IntervalParams:
        units = [name for name in _UNIT_SECONDS if getattr(self, name) is not None]
        if self.interval is not None and units:
            raise ValueError(f"give either 'interval' or {', '.join(units)}, not both")
        if self.interval is None and not units:
            raise ValueError(
                "an interval is required: 'interval: 5m' or one of milliseconds, seconds, "
                "minutes, hours, days"
            )
        total = self.total_seconds
        if not MIN_INTERVAL <= total <= MAX_INTERVAL or not math.isfinite(total):
            raise ValueError(
                f"the interval ({total:g}s) must be between 1 millisecond and 100 years"
            )
        if isinstance(self.spread, float) and self.spread > total:
            raise ValueError(
                f"spread ({self.spread:g}s) must not be longer than the interval ({total:g}s): "
                "use `spread: true` for the whole interval"
            )
        if self.jitter and self.jitter >= self.total_seconds:
            raise ValueError(
                f"jitter ({self.jitter:g}s) must be less than the interval "
                f"({self.total_seconds:g}s), or fires could change order"
            )
        return self

    @property
    def total_seconds(self) -> float:
        if self.interval is not None:
            return self.interval
        return sum(
            float(getattr(self, name)) * factor
            for name, factor in _UNIT_SECONDS.items()
            if getattr(self, name) is not None
        )


class IntervalTrigger(TimeTrigger[IntervalParams]):
    """Fires at ``start + offset + k * interval`` (k = 1, 2, ...), and at ``start`` too with
    ``run_on_start``, on the monotonic clock: a slow run or a busy loop never makes the
    schedule drift. ``spread``, ``jitter`` and ``max_lateness`` are its :class:`Timing`."""

    def __init__(self, params: IntervalParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self.interval = params.total_seconds
        spread = params.spread
        window = self.interval if spread is True else min(float(spread), self.interval)
        self.timing = Timing(
            spread=window,
            jitter=params.jitter,
            max_lateness=(
                params.max_lateness if params.max_lateness is not None else max(self.interval, 1.0)
            ),
        )

    def first_fire(self, start: float) -> float:
        if self.params.run_on_start:
            return start
        return start + self.params.offset + self.interval

    def next_fire_after(self, after: float, start: float) -> float:
        anchor = start + self.params.offset
        k = max(self._index_at_or_before(after, anchor) + 1, 1)
        return anchor + k * self.interval

    def latest_fire_at_or_before(self, t: float, start: float) -> float | None:
        """The last grid point (k >= 1) at or before ``t``; None when there is none."""
        anchor = start + self.params.offset
        k = self._index_at_or_before(t, anchor)
        return anchor + k * self.interval if k >= 1 else None

    def fires_between(self, after: float, upto: float, start: float) -> int:
        """How many grid points (k >= 1) lie in ``(after, upto]``."""
        if upto <= after:
            return 0
        anchor = start + self.params.offset
        high = max(self._index_at_or_before(upto, anchor), 0)
        low = max(self._index_at_or_before(after, anchor), 0)
        return high - low

    def _index_at_or_before(self, t: float, anchor: float) -> int:
        """The largest k with ``anchor + k * interval <= t`` (k may be 0 or negative)."""
        k = math.floor((t - anchor) / self.interval)
        # Float rounding may land a hair off; settle on the exact comparison.
        while anchor + k * self.interval > t:
            k -= 1
        while anchor + (k + 1) * self.interval <= t:
            k += 1
        return k
