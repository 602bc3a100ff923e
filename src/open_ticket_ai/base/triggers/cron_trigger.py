"""CronTrigger: fires on a cron schedule in a time zone, as Debian's cron does across DST.

cronsim matches the expression against naive wall-clock times; this module maps those times to
instants in the zone. Daylight-saving changes follow Debian's cron (man 8 cron):

- A *fixed-time* expression (neither the minute nor the hour field starts with ``*``) fires
  each wall time once: a time skipped by spring-forward fires at the transition, a time
  repeated by fall-back fires at its first occurrence after the trigger was armed.
- Any other expression (``*/15 * * * *``, ``0 * * * *``) follows the clock as it is: skipped
  times do not fire, repeated times fire in both passes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, Field

from open_ticket_ai import Duration, ParamsModel, TimeTrigger
from open_ticket_ai.core.triggers.timing import Timing

__all__ = [
    "CronExpression",
    "CronParams",
    "CronSchedule",
    "CronTrigger",
    "ZoneName",
    "local_zone",
    "zone_named",
]

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L, LW",
    "month": "1-12, jan-dec",
    "day-of-week": "0-7, sun-sat, 5L, mon#2",
}
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError (with a close match, if any) when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = {zone.lower(): zone for zone in available_timezones()}
    if not known:
        hint = "; no time zone database was found: install the 'tzdata' package"
    elif close := known.get(name.strip().lower()):
        hint = f"; did you mean {close!r}?"
    else:
        hint = ""
    raise ValueError(f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin'{hint}")


def local_zone(
    environ: Mapping[str, str] = os.environ,
    localtime: Path = Path("/etc/localtime"),
    timezone_file: Path = Path("/etc/timezone"),
) -> ZoneInfo:
    """The system's zone: ``$TZ`` (a zone name or a TZif file), else the zone
    ``/etc/localtime`` links to, else the name in ``/etc/timezone``, else the TZif file
    ``/etc/localtime``, else UTC."""
    tz = environ.get("TZ", "").strip().removeprefix(":")
    if tz and (zone := _zone_key(tz) or _zone_file(Path(tz))):
        return zone
    try:
        link = os.readlink(localtime)
    except OSError:
        link = ""
    if zone := _zone_key(link):
        return zone
    try:
        name = timezone_file.read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    return _zone_key(name) or _zone_file(localtime) or ZoneInfo("UTC")


def _zone_key(text: str) -> ZoneInfo | None:
    """The zone named ``text``, or by a path ending in ``zoneinfo/<name>``; None if none."""
    _, found, tail = text.partition("zoneinfo/")
    key = tail if found else text
    if not key or key.startswith("/"):
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone_file(path: Path) -> ZoneInfo | None:
    try:
        with path.open("rb") as file:
            return ZoneInfo.from_file(file, key=str(path))
    except (OSError, ValueError):
        return None


_SUNDAY_END = re.compile(r"-sun(?=$|[,/])", re.IGNORECASE)


def expand(expression: str) -> str:
    """``expression`` with an ``@daily``-style alias replaced; ValueError when it is not a valid
    5-field (or 6-field, seconds first) cron expression that ever matches."""
    text = " ".join(expression.split())
    if text.lower() == "@reboot":
        raise ValueError(
            "@reboot is not supported: open-ticket-ai does not see the machine boot. For a "
            "run when the service starts, give the runner no `on:` (it runs once at start) "
            "or an IntervalTrigger with `run_on_start: true`"
        )
    text = ALIASES.get(text.lower(), text)
    fields = text.split()
    if len(fields) in (5, 6):
        # A day-of-week range ending in Sunday (`sat-sun`, `mon-sun`), as cronie reads it:
        # Sunday is 7 at the end of a range.
        fields[-1] = _SUNDAY_END.sub("-7", fields[-1])
        text = " ".join(fields)
    if len(fields) not in (5, 6):
        raise ValueError(
            f"invalid cron expression {expression!r}: it has {len(fields)} fields; write 5 (minute "
            "hour day-of-month month day-of-week, e.g. '*/15 8-18 * * mon-fri'), 6 (seconds "
            f"first) or one of {', '.join(ALIASES)}"
        )
    try:
        first = next(CronSim(text, datetime(2000, 1, 1)), None)
    except CronSimError as exc:
        raise ValueError(
            f"invalid cron expression {expression!r}: {_problem(fields, exc)}"
        ) from None
    if first is None:
        raise ValueError(f"cron expression {expression!r} matches no date")
    return text


def _problem(fields: list[str], exc: CronSimError) -> str:
    """cronsim's "Bad minute", with the field's text and what it allows."""
    names = list(_FIELDS)[-len(fields) :]
    name = str(exc).removeprefix("Bad ")
    if name not in names:
        return str(exc)
    text = fields[names.index(name)]
    if name == "day-of-month":
        try:
            CronSim(" ".join([*fields[:-2], "*", fields[-1]]), datetime(2000, 1, 1))
        except CronSimError:
            pass
        else:
            return f"no month in {fields[-2]!r} has a day {text!r}"
    return f"bad {name} field {text!r} (allowed: {_FIELDS[name]})"


def _checked_zone(name: str) -> str:
    zone_named(name)
    return name


def _checked_cron(expression: str) -> str:
    expand(expression)
    return expression


ZoneName = Annotated[str, AfterValidator(_checked_zone)]
"""A param holding an IANA zone name, checked when the config loads."""
CronExpression = Annotated[str, AfterValidator(_checked_cron)]
"""A param holding a cron expression, checked when the config loads."""


class CronParams(ParamsModel):
    """``cron`` (5 fields, 6 with seconds first, or ``@daily``-style) and ``timezone`` (an IANA
    name; default: the system's local zone)."""

    cron: CronExpression
    timezone: ZoneName | None = None
    max_lateness: Duration = Field(60.0, gt=0)
    """A fire handled later than this (a blocked loop, a suspended machine) is skipped as
    ``run.missed``; several missed fires collapse into one run. Default: one minute."""


class CronSchedule:
    """A cron expression in a zone: pure arithmetic from POSIX timestamps to the next fire."""

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        self.expression = expand(expression)
        self.zone = zone
        fields = self.expression.split()
        minute, hour = fields[-5], fields[-4]
        self.fixed_time = not minute.startswith("*") and not hour.startswith("*")
        """Debian's test: only these get the skipped/repeated-time treatment."""

    def next_after(self, after: float, armed: float) -> float | None:
        """The first fire strictly after ``after`` of a schedule armed at ``armed``; None when
        the expression has no match within cronsim's 50-year horizon."""
        second = math.floor(after)
        here = datetime.fromtimestamp(second, self.zone)
        found = [
            fire
            for fire in (self._forward(here, after, armed), self._repeat(here, after, armed))
            if fire is not None
        ]
        return min(found, default=None)

    def _forward(self, here: datetime, after: float, armed: float) -> float | None:
        """The first fire among the matches later than ``here``'s wall time."""
        matches = CronSim(self.expression, here.replace(tzinfo=None))
        while (wall := next(matches, None)) is not None:
            early, late = self._offsets(wall)
            if early == late:
                fires = [_posix(wall, early)]
            elif late > early:  # skipped by spring-forward
                moment = self._transition(_posix(wall, late), _posix(wall, early))
                if not self.fixed_time:
                    # No time in the gap happens: go on from its end.
                    resume = datetime.fromtimestamp(moment, self.zone).replace(tzinfo=None)
                    matches = CronSim(self.expression, resume - _SECOND)
                    continue
                fires = [float(moment)]
            else:  # repeated by fall-back
                fires = self._passes(wall, early, late, armed)
            for fire in fires:
                if fire > after:
                    return fire
        return None

    def _repeat(self, here: datetime, after: float, armed: float) -> float | None:
        """When ``here`` lies in the first pass of a repeated period, the second pass of the
        matches up to ``here``'s wall time (later matches fire earlier, in the first pass)."""
        wall = here.replace(tzinfo=None)
        early, late = self._offsets(wall)
        if here.fold == 1 or early <= late:
            return None
        second = math.floor(after)
        moment = self._transition(second, second + (early - late) / _SECOND)
        repeat_start = datetime.fromtimestamp(moment, self.zone).replace(tzinfo=None)
        match = next(CronSim(self.expression, repeat_start - _SECOND), None)
        if match is None or match > wall:
            return None
        fires = self._passes(match, early, late, armed)
        return fires[-1] if fires[-1] > after else None

    def _passes(
        self, wall: datetime, early: timedelta, late: timedelta, armed: float
    ) -> list[float]:
        """The instants a repeated wall time fires at: both passes, or for a fixed-time
        expression the first occurrence after the schedule was armed."""
        first, second = _posix(wall, early), _posix(wall, late)
        if not self.fixed_time:
            return [first, second]
        return [first if first > armed else second]

    def _offsets(self, wall: datetime) -> tuple[timedelta, timedelta]:
        """The UTC offsets of ``wall`` before and after a transition (equal when there is none)."""
        early, late = (self.zone.utcoffset(wall.replace(fold=fold)) for fold in (0, 1))
        if early is None or late is None:  # pragma: no cover - a ZoneInfo always has one
            raise ValueError(f"{self.zone} has no UTC offset at {wall}")
        return early, late

    def _transition(self, before: float, after: float) -> int:
        """The first whole second after ``before`` (and at most ``after``) whose offset
        differs from ``before``'s: the moment the clock was changed."""
        low, high = math.floor(before), math.ceil(after)
        offset = datetime.fromtimestamp(low, self.zone).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.zone).utcoffset() == offset:
                low = middle
            else:
                high = middle
        return high


def _posix(wall: datetime, offset: timedelta) -> float:
    return (wall - offset - _EPOCH) / _SECOND


class CronTrigger(TimeTrigger[CronParams]):
    """Fires at the wall-clock times a cron expression matches in ``timezone`` (default: the
    system's zone), with Debian cron's daylight-saving behaviour (see the module docstring)."""

    clock = "wall"

    def __init__(self, params: CronParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        zone = zone_named(params.timezone) if params.timezone else local_zone()
        self.schedule = CronSchedule(params.cron, zone)
        self.timing = Timing(max_lateness=params.max_lateness)

    @property
    def zone(self) -> ZoneInfo:
        """The zone the expression is read in."""
        return self.schedule.zone

    @property
    def fixed_time(self) -> bool:
        return self.schedule.fixed_time

    def next_fire_after(self, after: float, start: float) -> float | None:
        return self.schedule.next_after(after, start)
