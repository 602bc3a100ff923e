"""CronTrigger time arithmetic with fixed datetimes: no sleeping, no real clock."""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from open_ticket_ai import build, parse_config
from open_ticket_ai.base.triggers.cron_trigger import (
    CronParams,
    CronSchedule,
    CronTrigger,
    local_zone,
    zone_named,
)
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.core.triggers.base import Trigger
from open_ticket_ai.errors import ConfigError

ZONES = ["Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]


def trigger(cron: str, timezone: str = "Europe/Berlin") -> CronTrigger:
    return CronTrigger(CronParams(cron=cron, timezone=timezone), id="t")


def fires(cron: str, timezone: str, start: str, count: int) -> list[str]:
    """The first ``count`` fires of a trigger armed at ``start``, as ISO times in the zone."""
    t = trigger(cron, timezone)
    armed = datetime.fromisoformat(start).timestamp()
    found: list[str] = []
    fire = t.first_fire(armed)
    while fire is not None and len(found) < count:
        found.append(datetime.fromtimestamp(fire, t.zone).isoformat())
        fire = t.next_fire_after(fire, armed)
    return found


# -- daylight saving time: zone, armed at, expression, the fires expected ------------------------

DST_MATRIX = [
    # Europe/Berlin springs forward 2025-03-30 02:00 -> 03:00 and falls back 03:00 -> 02:00 on
    # 2025-10-26: a fixed time in the gap fires at the transition, a repeated one once.
    ("Europe/Berlin", "2025-03-29T12:00+01:00", "30 2 * * *",
     ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ("Europe/Berlin", "2025-03-29T12:00+01:00", "0,30 2 * * *",
     ["2025-03-30T03:00:00+02:00", "2025-03-31T02:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ("Europe/Berlin", "2025-03-29T12:00+01:00", "0 30 2 * * *",
     ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ("Europe/Berlin", "2025-03-30T01:00+01:00", "*/30 * * * *",
     ["2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00"]),
    ("Europe/Berlin", "2025-03-30T01:00+01:00", "*/30 2 * * *",
     ["2025-03-31T02:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ("Europe/Berlin", "2025-10-25T12:00+02:00", "30 2 * * *",
     ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
    ("Europe/Berlin", "2025-10-25T12:00+02:00", "0 30 2 * * *",
     ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
    ("Europe/Berlin", "2025-10-26T02:20+02:00", "30 2 * * *",
     ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]),
    # Armed in the repeated hour after its first 02:30: the second 02:30 is the first after.
    ("Europe/Berlin", "2025-10-26T02:40+02:00", "30 2 * * *",
     ["2025-10-26T02:30:00+01:00", "2025-10-27T02:30:00+01:00"]),
    ("Europe/Berlin", "2025-10-26T02:10+01:00", "30 2 * * *",
     ["2025-10-26T02:30:00+01:00", "2025-10-27T02:30:00+01:00"]),
    ("Europe/Berlin", "2025-10-26T01:45+02:00", "*/30 * * * *",
     ["2025-10-26T02:00:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-26T02:00:00+01:00",
      "2025-10-26T02:30:00+01:00", "2025-10-26T03:00:00+01:00"]),
    ("Europe/Berlin", "2025-10-26T02:40+02:00", "*/30 * * * *",
     ["2025-10-26T02:00:00+01:00", "2025-10-26T02:30:00+01:00", "2025-10-26T03:00:00+01:00"]),
    # America/New_York: 2025-03-09 02:00 -> 03:00, 2025-11-02 02:00 -> 01:00.
    ("America/New_York", "2025-03-08T12:00-05:00", "30 2 * * *",
     ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"]),
    ("America/New_York", "2025-03-09T00:30-05:00", "0 * * * *",
     ["2025-03-09T01:00:00-05:00", "2025-03-09T03:00:00-04:00", "2025-03-09T04:00:00-04:00"]),
    ("America/New_York", "2025-11-01T12:00-04:00", "30 1 * * *",
     ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]),
    ("America/New_York", "2025-11-02T00:30-04:00", "0 * * * *",
     ["2025-11-02T01:00:00-04:00", "2025-11-02T01:00:00-05:00", "2025-11-02T02:00:00-05:00"]),
    ("America/New_York", "2025-11-01T12:00-04:00", "15 2 * * *",
     ["2025-11-02T02:15:00-05:00", "2025-11-03T02:15:00-05:00"]),
    # America/Santiago changes at midnight: 2025-09-07 00:00 -> 01:00 (the day's midnight is
    # skipped, the daily run still happens that day), 2025-04-06 00:00 -> 2025-04-05 23:00.
    ("America/Santiago", "2025-09-05T12:00-04:00", "0 0 * * *",
     ["2025-09-06T00:00:00-04:00", "2025-09-07T01:00:00-03:00", "2025-09-08T00:00:00-03:00"]),
    ("America/Santiago", "2025-09-05T12:00-04:00", "@daily",
     ["2025-09-06T00:00:00-04:00", "2025-09-07T01:00:00-03:00", "2025-09-08T00:00:00-03:00"]),
    ("America/Santiago", "2025-09-05T12:00-04:00", "30 0 * * *",
     ["2025-09-06T00:30:00-04:00", "2025-09-07T01:00:00-03:00", "2025-09-08T00:30:00-03:00"]),
    ("America/Santiago", "2025-09-06T12:00-04:00", "*/30 0 * * *",
     ["2025-09-08T00:00:00-03:00", "2025-09-08T00:30:00-03:00"]),
    ("America/Santiago", "2025-04-04T12:00-03:00", "0 0 * * *",
     ["2025-04-05T00:00:00-03:00", "2025-04-06T00:00:00-04:00", "2025-04-07T00:00:00-04:00"]),
    ("America/Santiago", "2025-04-05T12:00-03:00", "30 23 * * *",
     ["2025-04-05T23:30:00-03:00", "2025-04-06T23:30:00-04:00"]),
    ("America/Santiago", "2025-04-05T22:50-03:00", "*/20 23 * * *",
     ["2025-04-05T23:00:00-03:00", "2025-04-05T23:20:00-03:00", "2025-04-05T23:40:00-03:00",
      "2025-04-05T23:00:00-04:00", "2025-04-05T23:20:00-04:00", "2025-04-05T23:40:00-04:00",
      "2025-04-06T23:00:00-04:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "start", "cron", "expected"), DST_MATRIX)
def test_daylight_saving_changes_follow_debian_cron(
    zone: str, start: str, cron: str, expected: list[str]
) -> None:
    assert fires(cron, zone, start, len(expected)) == expected


ORDINARY = [
    # 2025-06-13 is a Friday: the next quarter hour, then Monday from 08:00.
    ("*/15 8-18 * * mon-fri", "2025-06-13T18:40+02:00",
     ["2025-06-13T18:45:00+02:00", "2025-06-16T08:00:00+02:00", "2025-06-16T08:15:00+02:00"]),
    ("0 9 1,15 * *", "2025-06-02T00:00+02:00",
     ["2025-06-15T09:00:00+02:00", "2025-07-01T09:00:00+02:00", "2025-07-15T09:00:00+02:00"]),
    ("0 */6 * * *", "2025-06-02T05:00+02:00",
     ["2025-06-02T06:00:00+02:00", "2025-06-02T12:00:00+02:00", "2025-06-02T18:00:00+02:00",
      "2025-06-03T00:00:00+02:00"]),
    ("5-20/5 10 * * *", "2025-06-02T10:05+02:00",
     ["2025-06-02T10:10:00+02:00", "2025-06-02T10:15:00+02:00", "2025-06-02T10:20:00+02:00",
      "2025-06-03T10:05:00+02:00"]),
    ("0 0 29 2 *", "2025-03-01T00:00+01:00",
     ["2028-02-29T00:00:00+01:00", "2032-02-29T00:00:00+01:00"]),
    ("0 0 L * *", "2025-01-15T00:00+01:00",
     ["2025-01-31T00:00:00+01:00", "2025-02-28T00:00:00+01:00", "2025-03-31T00:00:00+02:00"]),
    # Day of month and day of week both restricted: either matches (Debian).
    ("0 12 13 * fri", "2025-06-01T00:00+02:00",
     ["2025-06-06T12:00:00+02:00", "2025-06-13T12:00:00+02:00", "2025-06-20T12:00:00+02:00",
      "2025-06-27T12:00:00+02:00", "2025-07-04T12:00:00+02:00", "2025-07-11T12:00:00+02:00",
      "2025-07-13T12:00:00+02:00"]),
    ("0 8 * * mon#1", "2025-06-01T00:00+02:00",
     ["2025-06-02T08:00:00+02:00", "2025-07-07T08:00:00+02:00"]),
    ("*/20 * * * * *", "2025-06-02T10:00:05+02:00",
     ["2025-06-02T10:00:20+02:00", "2025-06-02T10:00:40+02:00", "2025-06-02T10:01:00+02:00"]),
    ("@hourly", "2025-06-02T10:00+02:00",
     ["2025-06-02T11:00:00+02:00", "2025-06-02T12:00:00+02:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("cron", "start", "expected"), ORDINARY)
def test_ordinary_schedules(cron: str, start: str, expected: list[str]) -> None:
    assert fires(cron, "Europe/Berlin", start, len(expected)) == expected


def test_the_zone_decides_the_wall_clock() -> None:
    start = datetime.fromisoformat("2025-06-02T00:00:00+00:00").timestamp()
    assert trigger("0 9 * * *", "UTC").first_fire(start) == start + 9 * 3600
    assert trigger("0 9 * * *", "Asia/Tokyo").first_fire(start) == start + 24 * 3600
    assert trigger("0 9 * * *", "America/New_York").first_fire(start) == start + 13 * 3600


def test_fires_strictly_after_a_fractional_or_matching_time() -> None:
    t = trigger("0 * * * *", "UTC")
    hour = datetime.fromisoformat("2025-06-02T10:00:00+00:00").timestamp()
    assert t.first_fire(hour) == hour + 3600
    assert t.next_fire_after(hour - 0.25, hour - 100) == hour
    assert t.next_fire_after(hour + 0.999999, hour) == hour + 3600


def test_a_late_handling_never_fires_what_passed_twice() -> None:
    # Fired at the first 02:30, then the process stalled into the repeated hour.
    t = trigger("30 2 * * *")
    armed = datetime.fromisoformat("2025-10-25T12:00+02:00").timestamp()
    stalled = datetime.fromisoformat("2025-10-26T02:10+01:00").timestamp()
    following = t.next_fire_after(stalled, armed)
    assert following == datetime.fromisoformat("2025-10-27T02:30+01:00").timestamp()


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("* * * *", "it has 4 fields; write 5"),
        ("* * * * * * *", "it has 7 fields"),
        ("", "it has 0 fields"),
        ("61 * * * *", "bad minute field '61' (allowed: 0-59)"),
        ("* 24 * * *", "bad hour field '24' (allowed: 0-23)"),
        ("*/0 * * * *", "bad minute field '*/0'"),
        ("* * * * mon-xyz", "bad day-of-week field 'mon-xyz'"),
        ("* * 1 13 *", "bad month field '13'"),
        ("60 * * * * *", "bad second field '60'"),
        ("0 0 30 2 *", "no month in '2' has a day '30'"),
    ],
)
def test_bad_expressions_are_params_errors(cron: str, message: str) -> None:
    with pytest.raises(ValidationError, match="invalid cron expression") as info:
        CronParams(cron=cron)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "cron",
    ["*/15 8-18 * * mon-fri", "0 30 2 * * *", "@daily", "@HOURLY", "0 0 L * *", "0 0 * * 5L",
     "0 0 * * mon#1", "0 0 LW * *", "0 12 * jan-mar SUN", "  0   9 * * * "],
)  # fmt: skip
def test_good_expressions_load(cron: str) -> None:
    assert CronParams(cron=cron).cron == cron


def test_a_bad_zone_is_a_params_error_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        CronParams(cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="did you mean 'Europe/Berlin'"):
        CronParams(cron="* * * * *", timezone="europe/berlin")


def test_a_bad_expression_names_its_config_path() -> None:
    text = """\
orchestrator:
  runners:
    - id: nightly
      on: [{id: at_night, use: CronTrigger, params: {cron: "0 25 * * *"}}]
      run: {id: noop, use: ExpressionPipe, params: {expression: "x"}}
"""
    with pytest.raises(ConfigError) as info:
        build(parse_config(text))
    (problem,) = info.value.problems
    assert problem.path == "orchestrator.runners[0].on[0].params.cron"
    assert "bad hour field '25'" in problem.message


def test_short_name_and_wall_clock() -> None:
    cls = Registry(load_entry_points=False).resolve("CronTrigger", Trigger)
    assert cls is CronTrigger
    assert CronTrigger.clock == "wall"


# -- the default zone ----------------------------------------------------------------------------

ZONEINFO = next((Path(p) for p in TZPATH if (Path(p) / "Asia" / "Tokyo").is_file()), None)
needs_zone_files = pytest.mark.skipif(ZONEINFO is None, reason="no system time zone files")


def test_default_zone_is_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert CronTrigger(CronParams(cron="* * * * *")).zone == ZoneInfo("Asia/Tokyo")


@needs_zone_files
def test_local_zone_reads_tz_first(tmp_path: Path) -> None:
    assert ZONEINFO is not None
    none = tmp_path / "missing"
    assert local_zone({"TZ": "Europe/Berlin"}, none, none) == ZoneInfo("Europe/Berlin")
    assert local_zone({"TZ": ":America/Santiago"}, none, none) == ZoneInfo("America/Santiago")
    path = {"TZ": str(ZONEINFO / "America/New_York")}
    assert local_zone(path, none, none) == ZoneInfo("America/New_York")


@needs_zone_files
def test_local_zone_falls_back_to_etc_localtime_then_utc(tmp_path: Path) -> None:
    assert ZONEINFO is not None
    link, name_file = tmp_path / "localtime", tmp_path / "timezone"
    link.symlink_to(ZONEINFO / "Asia" / "Tokyo")
    # A TZ that names no zone (a POSIX rule) is passed over.
    assert local_zone({"TZ": "CET-1CEST,M3.5.0"}, link, name_file) == ZoneInfo("Asia/Tokyo")
    link.unlink()
    name_file.write_text("Europe/Berlin\n", encoding="utf-8")
    assert local_zone({}, link, name_file) == ZoneInfo("Europe/Berlin")
    name_file.unlink()
    shutil.copy(ZONEINFO / "America" / "Santiago", link)  # a copy, as Docker images have
    copied = local_zone({}, link, name_file)
    santiago = datetime(2025, 1, 1, 12)
    assert copied.utcoffset(santiago) == ZoneInfo("America/Santiago").utcoffset(santiago)
    link.unlink()
    assert local_zone({}, link, name_file) == ZoneInfo("UTC")
    assert zone_named("UTC") == ZoneInfo("UTC")


# -- invariants ----------------------------------------------------------------------------------


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    span = st.tuples(number, number).map(sorted)
    return st.one_of(
        st.just("*"),
        st.integers(1, high - low).map(lambda k: f"*/{k}"),
        number.map(str),
        span.map(lambda r: f"{r[0]}-{r[1]}"),
        st.tuples(span, st.integers(1, 5)).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
        st.lists(number, min_size=2, max_size=3, unique=True).map(lambda v: ",".join(map(str, v))),
    )


FIVE_FIELDS = st.tuples(
    _field(0, 59),
    _field(0, 23),
    st.one_of(st.just("*"), _field(1, 28)),
    st.one_of(st.just("*"), st.just("*"), _field(1, 12)),
    st.sampled_from(["*", "*", "*", "mon-fri", "0", "sat,sun", "1-5/2"]),
).map(" ".join)
EXPRESSIONS = st.one_of(
    FIVE_FIELDS,
    st.tuples(st.sampled_from(["0", "30", "*/20", "15,45"]), FIVE_FIELDS).map(" ".join),
)


def _transitions(zone: str, years: range) -> list[int]:
    """Every moment the zone's offset changes in ``years``, to the second."""
    tz = ZoneInfo(zone)
    found = []
    moment = int(datetime(years.start, 1, 1, tzinfo=tz).timestamp())
    end = int(datetime(years.stop, 1, 1, tzinfo=tz).timestamp())
    while moment < end:
        step = moment + 6 * 3600
        if _offset(tz, step) != _offset(tz, moment):
            low, high = moment, step
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(tz, middle) == _offset(tz, low):
                    low = middle
                else:
                    high = middle
            found.append(high)
        moment = step
    return found


def _offset(tz: ZoneInfo, moment: float) -> timedelta | None:
    return datetime.fromtimestamp(moment, tz).utcoffset()


TRANSITIONS = {zone: _transitions(zone, range(2024, 2027)) for zone in ZONES}


@st.composite
def armed_times(draw: st.DrawFn, zone: str) -> float:
    """Near a daylight-saving change most of the time, anywhere in 2020-2035 otherwise."""
    if draw(st.booleans()):
        near = draw(st.sampled_from(TRANSITIONS[zone]))
        return near + draw(st.integers(-2 * 86400, 2 * 86400)) + draw(st.sampled_from([0, 0.5]))
    return float(draw(st.integers(1_577_836_800, 2_082_758_400)))


def matches(cron: str, wall: datetime) -> bool:
    """Whether cronsim, on naive wall times, matches ``wall`` (our oracle of the calendar)."""
    return next(CronSim(cron, wall - timedelta(seconds=1))) == wall


def skipped_match(schedule: CronSchedule, fire: float) -> bool:
    """Whether ``fire`` is a spring-forward moment standing in for a match in the gap."""
    zone = schedule.zone
    before, at = (datetime.fromtimestamp(t, zone) for t in (fire - 1, fire))
    if before.utcoffset() == at.utcoffset():
        return False
    gap_match = next(CronSim(schedule.expression, before.replace(tzinfo=None)))
    return schedule.fixed_time and gap_match < at.replace(tzinfo=None)


@settings(deadline=None, max_examples=300)
@given(data=st.data(), cron=EXPRESSIONS, zone=st.sampled_from(ZONES))
def test_fires_increase_never_repeat_and_match(data: st.DataObject, cron: str, zone: str) -> None:
    schedule = CronSchedule(cron, ZoneInfo(zone))
    armed = data.draw(armed_times(zone))
    previous, walls = armed, set()
    for _ in range(40):
        fire = schedule.next_after(previous, armed)
        if fire is None:
            break
        assert fire > previous
        assert fire == math.floor(fire)
        wall = datetime.fromtimestamp(fire, schedule.zone).replace(tzinfo=None)
        assert matches(schedule.expression, wall) or skipped_match(schedule, fire)
        if schedule.fixed_time:  # a repeated wall time fires once
            assert wall not in walls
            walls.add(wall)
        previous = fire


def brute_force(schedule: CronSchedule, armed: float, until: float) -> list[float]:
    """Every fire in (armed, until] by walking each minute and applying Debian's rules."""
    zone, found = schedule.zone, list[float]()
    moment = (math.floor(armed / 60) + 1) * 60
    while moment <= until:
        here, before = (datetime.fromtimestamp(t, zone) for t in (moment, moment - 60))
        wall = here.replace(tzinfo=None)
        if (
            schedule.fixed_time
            and (here.utcoffset() or timedelta()) > (before.utcoffset() or timedelta())
            and next(CronSim(schedule.expression, before.replace(tzinfo=None))) < wall
        ):
            found.append(moment)  # stands in for the skipped matches
        elif matches(schedule.expression, wall):
            first = wall.replace(tzinfo=zone, fold=0).timestamp()
            second = wall.replace(tzinfo=zone, fold=1).timestamp()
            once = first if first > armed else second  # a fixed time repeated: fires once
            if not schedule.fixed_time or first == second or moment == once:
                found.append(moment)
        moment += 60
    return found


@settings(deadline=None, max_examples=200)
@given(data=st.data(), cron=FIVE_FIELDS, zone=st.sampled_from(ZONES))
def test_no_fire_is_missed_around_a_change(data: st.DataObject, cron: str, zone: str) -> None:
    schedule = CronSchedule(cron, ZoneInfo(zone))
    armed = data.draw(st.sampled_from(TRANSITIONS[zone])) + data.draw(
        st.integers(-5 * 3600, 2 * 3600)
    )
    until = armed + 6 * 3600
    computed, fire = [], schedule.next_after(armed, armed)
    while fire is not None and fire <= until:
        computed.append(fire)
        fire = schedule.next_after(fire, armed)
    assert computed == brute_force(schedule, armed, until)


def test_late_cron_fires_are_skipped_after_max_lateness() -> None:
    from open_ticket_ai.core.triggers.timing import timing_of

    default = CronTrigger(CronParams.model_validate({"cron": "* * * * *"}), id="c")
    assert timing_of(default).max_lateness == 60.0
    custom = CronTrigger(
        CronParams.model_validate({"cron": "* * * * *", "max_lateness": "5m"}), id="c"
    )
    assert timing_of(custom).max_lateness == 300.0


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 0 * * sat-sun", {"Sat", "Sun"}),
        ("0 0 * * fri-sun", {"Fri", "Sat", "Sun"}),
        ("0 0 * * MON-SUN", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
        ("0 0 * * 1/2", {"Mon", "Wed", "Fri", "Sun"}),
        ("0 0 * * 6/1", {"Sat", "Sun"}),
    ],
)
def test_day_of_week_ranges_ending_in_sunday_read_as_cronie_reads_them(
    expression: str, days: set[str]
) -> None:
    from datetime import datetime

    from cronsim import CronSim

    from open_ticket_ai.base.triggers.cron_trigger import expand

    matches = CronSim(expand(expression), datetime(2026, 1, 1))
    assert {next(matches).strftime("%a") for _ in range(14)} == days


def test_reboot_says_what_to_use_instead() -> None:
    from open_ticket_ai.base.triggers.cron_trigger import expand

    with pytest.raises(ValueError, match=r"@reboot is not supported.*run_on_start"):
        expand("@reboot")
