"""IntervalTrigger: fires every interval on a fixed grid."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from open_ticket_ai.core.component import ParamsModel
from open_ticket_ai.core.durations import Duration
from open_ticket_ai.core.orchestration.trigger import TimeTrigger

__all__ = ["IntervalParams", "IntervalTrigger"]

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
    schedule drift."""

    def __init__(self, params: IntervalParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self.interval = params.total_seconds

    def first_fire(self, start: float) -> float:
        if self.params.run_on_start:
            return start
        return start + self.params.offset + self.interval

    def next_fire_after(self, after: float, start: float) -> float:
        anchor = start + self.params.offset
        k = max(math.floor((after - anchor) / self.interval) + 1, 1)
        fire = anchor + k * self.interval
        # Float rounding may land a hair at or before `after`; step to the next grid point.
        while fire <= after:
            k += 1
            fire = anchor + k * self.interval
        return fire
