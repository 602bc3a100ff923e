"""IntervalTrigger time arithmetic, with fixed times and no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from open_ticket_ai.base.triggers.interval_trigger import IntervalParams, IntervalTrigger


def trigger(**params: object) -> IntervalTrigger:
    return IntervalTrigger(IntervalParams.model_validate(params), id="t")


@pytest.mark.parametrize(
    ("params", "seconds"),
    [
        ({"milliseconds": 300000}, 300.0),
        ({"seconds": 30}, 30.0),
        ({"minutes": 5, "seconds": 30}, 330.0),
        ({"hours": 1, "minutes": 30}, 5400.0),
        ({"days": 1}, 86400.0),
        ({"interval": "5m"}, 300.0),
        ({"interval": "1h30m"}, 5400.0),
        ({"interval": "PT5M"}, 300.0),
        ({"interval": 2.5}, 2.5),
    ],
)
def test_interval_forms_sum_to_seconds(params: dict[str, object], seconds: float) -> None:
    assert trigger(**params).interval == seconds


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"milliseconds": 0},
        {"seconds": -1},
        {"interval": "0s"},
        {"interval": "soon"},
        {"interval": "5m", "seconds": 1},
        {"minutes": 1, "every": 3},
    ],
)
def test_invalid_intervals_are_rejected(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IntervalParams.model_validate(params)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"milliseconds": 1.0e-9}, "between 1 millisecond and 100 years"),
        ({"days": 1e305}, "between 1 millisecond and 100 years"),
        ({"days": 365.25 * 101}, "between 1 millisecond and 100 years"),
        ({"seconds": 5, "spread": "10s"}, "spread .10s. must not be longer than the interval"),
    ],
)
def test_absurd_intervals_and_spreads_are_config_errors(
    params: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        IntervalParams.model_validate(params)


def test_a_spread_up_to_the_interval_and_a_millisecond_interval_are_fine() -> None:
    assert IntervalParams.model_validate({"seconds": 5, "spread": "5s"}).total_seconds == 5
    assert IntervalParams.model_validate({"milliseconds": 1}).total_seconds == 0.001


def test_first_fire_is_one_interval_after_start() -> None:
    assert trigger(seconds=10).first_fire(1000.0) == 1010.0


def test_run_on_start_fires_at_start() -> None:
    assert trigger(seconds=10, run_on_start=True).first_fire(1000.0) == 1000.0


def test_next_fire_stays_on_the_grid_after_a_late_fire() -> None:
    t = trigger(seconds=10)
    # Fired at 1010 but handled at 1013.7 (a slow loop): the next fire is 1020, not 1023.7.
    assert t.next_fire_after(1013.7, 1000.0) == 1020.0
    # After a long stall the next fire is the first grid point after now.
    assert t.next_fire_after(1047.0, 1000.0) == 1050.0


def test_offset_shifts_the_grid() -> None:
    t = trigger(seconds=10, offset="2.5s")
    assert t.first_fire(1000.0) == 1012.5
    assert t.next_fire_after(1012.5, 1000.0) == 1022.5


@given(
    interval=st.floats(min_value=0.001, max_value=1e5),
    start=st.floats(min_value=0, max_value=1e9),
    steps=st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=20),
)
def test_fire_times_strictly_increase_and_lie_on_the_grid(
    interval: float, start: float, steps: list[float]
) -> None:
    t = IntervalTrigger(IntervalParams(interval=interval), id="t")
    fire = t.first_fire(start)
    for lag in steps:
        now = fire + lag * interval  # handled `lag` intervals late
        following = t.next_fire_after(now, start)
        assert following > now
        assert following > fire
        k = round((following - start) / interval)
        assert abs(start + k * interval - following) <= 1e-6 * max(1.0, abs(following))
        assert following - now <= interval * (1 + 1e-9) + 1e-6
        fire = following


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_infinite_or_nan_units_are_rejected(value: float) -> None:
    with pytest.raises(ValidationError):
        IntervalParams.model_validate({"milliseconds": value})
