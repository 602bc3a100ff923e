"""DateTrigger: fires once, at a given date and time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import Field, model_validator

from open_ticket_ai import Duration, ParamsModel, TimeTrigger
from open_ticket_ai.base.triggers.cron_trigger import ZoneName, zone_named
from open_ticket_ai.core.durations import format_duration

__all__ = ["DateParams", "DateTrigger"]


class DateParams(ParamsModel):
    """``at`` (with a UTC offset, or a local time with ``timezone``) and ``grace``."""

    at: datetime
    """When to fire: ``2030-06-01T09:00:00+02:00``, ``2030-06-01T07:00:00Z``, or a time
    without an offset together with ``timezone``."""
    timezone: ZoneName | None = None
    """The IANA zone a local ``at`` is read in; not allowed when ``at`` has an offset."""
    grace: Duration = Field(default=0.0, ge=0)
    """How late the trigger may still fire when ``at`` has already passed when it is armed:
    it fires once, at once. By default a past ``at`` never fires."""

    @model_validator(mode="after")
    def _one_offset(self) -> DateParams:
        has_offset = self.at.utcoffset() is not None
        if has_offset and self.timezone is not None:
            raise ValueError(
                f"'at' ({self.at.isoformat()}) has a UTC offset and 'timezone' is given too: "
                "drop one of them"
            )
        if not has_offset and self.timezone is None:
            raise ValueError(
                f"'at' ({self.at.isoformat()}) has no UTC offset: write one "
                "('2030-06-01T09:00:00+02:00', '...Z') or give 'timezone'"
            )
        if not has_offset:
            aware = self.localized
            if aware.astimezone(UTC).astimezone(aware.tzinfo).replace(tzinfo=None) != self.at:
                raise ValueError(
                    f"'at' ({self.at.isoformat()}) does not exist in {self.timezone}: "
                    "the clocks skip it (daylight saving time begins)"
                )
        return self

    @property
    def localized(self) -> datetime:
        """``at`` as an aware datetime. A local time that occurs twice (daylight saving time
        ends) means its first occurrence."""
        if self.at.utcoffset() is not None or self.timezone is None:
            return self.at
        return self.at.replace(tzinfo=zone_named(self.timezone), fold=0)


class DateTrigger(TimeTrigger[DateParams]):
    """Fires once at ``at``. When ``at`` has passed by the time the trigger is armed, it fires
    once at arming if ``at`` is at most ``grace`` ago, and never otherwise."""

    clock = "wall"

    def __init__(self, params: DateParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self.at = params.localized.timestamp()
        """``at`` as a POSIX timestamp."""

    def warnings(self) -> list[tuple[str, str]]:
        passed = time.time() - self.at
        if passed <= self.params.grace:
            return []
        return [
            (
                "at",
                f"{self.params.localized.isoformat()} passed {format_duration(passed)} ago, "
                f"longer than its grace of {format_duration(self.params.grace)}: this trigger "
                "will never fire",
            )
        ]

    def first_fire(self, start: float) -> float | None:
        if self.at >= start:
            return self.at
        if start - self.at <= self.params.grace:
            return start
        return None

    def next_fire_after(self, after: float, start: float) -> float | None:
        fire = self.first_fire(start)
        return fire if fire is not None and fire > after else None
