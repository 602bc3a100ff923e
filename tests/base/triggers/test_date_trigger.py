"""DateTrigger: one fire at a fixed moment, with fixed times and no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from open_ticket_ai import build, parse_config
from open_ticket_ai.base.triggers.date_trigger import DateParams, DateTrigger
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.core.triggers.base import Trigger

AT = datetime(2030, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
T = AT.timestamp()


def trigger(**params: object) -> DateTrigger:
    return DateTrigger(DateParams.model_validate(params), id="t")


@pytest.mark.parametrize(
    "params",
    [
        {"at": AT},
        {"at": "2030-06-01T09:00:00+02:00"},
        {"at": "2030-06-01 07:00:00Z"},
        {"at": int(T)},
        {"at": "2030-06-01T09:00:00", "timezone": "Europe/Berlin"},
        {"at": "2030-06-01T03:00:00", "timezone": "America/New_York"},
    ],
)
def test_at_forms_name_the_same_moment(params: dict[str, object]) -> None:
    assert trigger(**params).at == T


def test_fires_once_at_the_moment() -> None:
    t = trigger(at=AT)
    start = T - 3600
    assert t.first_fire(start) == T
    assert t.next_fire_after(start, start) == T
    assert t.next_fire_after(T - 0.5, start) == T
    assert t.next_fire_after(T, start) is None
    assert t.next_fire_after(T + 3600, start) is None


def test_a_moment_equal_to_start_fires_at_start() -> None:
    assert trigger(at=AT).first_fire(T) == T


def test_a_past_moment_never_fires_by_default() -> None:
    t = trigger(at=AT)
    assert t.first_fire(T + 0.001) is None
    assert t.next_fire_after(T + 1, T + 1) is None


def test_a_past_moment_within_grace_fires_once_at_start() -> None:
    t = trigger(at=AT, grace="10m")
    start = T + 599
    assert t.first_fire(start) == start
    assert t.next_fire_after(start, start) is None
    assert t.first_fire(T + 601) is None


def test_a_local_time_needs_a_zone() -> None:
    with pytest.raises(ValidationError, match="has no UTC offset"):
        DateParams.model_validate({"at": "2030-06-01T09:00:00"})
    with pytest.raises(ValidationError, match="has a UTC offset and 'timezone' is given too"):
        DateParams.model_validate({"at": AT, "timezone": "Europe/Berlin"})
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Berln'"):
        DateParams.model_validate({"at": "2030-06-01T09:00:00", "timezone": "Europe/Berln"})


def test_a_skipped_local_time_is_an_error_and_a_repeated_one_means_the_first() -> None:
    with pytest.raises(ValidationError, match="does not exist in Europe/Berlin"):
        DateParams.model_validate({"at": "2030-03-31T02:30:00", "timezone": "Europe/Berlin"})
    t = trigger(at="2030-10-27T02:30:00", timezone="Europe/Berlin")
    assert t.at == datetime.fromisoformat("2030-10-27T02:30:00+02:00").timestamp()


@pytest.mark.parametrize("grace", [-1, "soon"])
def test_bad_grace_is_rejected(grace: object) -> None:
    with pytest.raises(ValidationError):
        DateParams.model_validate({"at": AT, "grace": grace})


def test_yaml_timestamps_load() -> None:
    text = """\
orchestrator:
  runners:
    - id: launch
      on:
        - {id: aware, use: DateTrigger, params: {at: 2030-06-01 09:00:00+02:00}}
        - {id: local, use: DateTrigger, params: {at: 2030-06-01 09:00, timezone: Europe/Berlin}}
      run: {id: go, use: ExpressionPipe, params: {expression: "launched"}}
"""
    compiled = build(parse_config(text))
    for trigger_id in ("aware", "local"):
        built = compiled.triggers[trigger_id]
        assert isinstance(built, DateTrigger)
        assert built.at == T


def test_short_name_and_wall_clock() -> None:
    assert Registry(load_entry_points=False).resolve("DateTrigger", Trigger) is DateTrigger
    assert DateTrigger.clock == "wall"


@given(
    at=st.floats(min_value=0, max_value=4e9),
    start=st.floats(min_value=0, max_value=4e9),
    grace=st.floats(min_value=0, max_value=1e6),
    probes=st.lists(st.floats(min_value=0, max_value=4e9), max_size=5),
)
def test_at_most_one_fire_never_before_start(
    at: float, start: float, grace: float, probes: list[float]
) -> None:
    t = trigger(at=datetime.fromtimestamp(at, UTC), grace=grace)
    first = t.first_fire(start)
    if first is not None:
        assert first >= start
        assert first in (t.at, start)
        assert t.next_fire_after(first, start) is None
    for after in probes:
        following = t.next_fire_after(max(after, start), start)
        assert following is None or following == first
