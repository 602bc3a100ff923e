"""Spread, jitter and late-fire arithmetic, with fixed numbers and no clock."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from open_ticket_ai.base.triggers.interval_trigger import IntervalParams, IntervalTrigger
from open_ticket_ai.core.triggers.timing import (
    NO_TIMING,
    Resolution,
    count_fires,
    overdue,
    resolve,
    spread_phase,
    stable_fraction,
    timing_of,
)
from open_ticket_ai.runtime.scheduler import Schedule


def interval(**params: object) -> IntervalTrigger:
    return IntervalTrigger(IntervalParams.model_validate(params), id="t")


class Stepwise:
    """An interval grid that can only step: the arithmetic's path for any other trigger."""

    def __init__(self, inner: IntervalTrigger) -> None:
        self.inner = inner

    def next_fire_after(self, after: float, start: float) -> float | None:
        return self.inner.next_fire_after(after, start)


# -- spread ----------------------------------------------------------------------------------


def test_stable_fraction_is_the_same_in_every_process() -> None:
    # A literal: Python's hash() is salted per process, this must not be.
    assert stable_fraction("t", "r") == 0.7601801505411568


def test_spread_phases_are_fixed_distinct_and_inside_the_window() -> None:
    phases = [spread_phase("every_minute", f"r{i}", 60.0) for i in range(1000)]
    assert phases == [spread_phase("every_minute", f"r{i}", 60.0) for i in range(1000)]
    assert all(0 <= p < 60.0 for p in phases)
    assert len({round(p, 6) for p in phases}) == 1000
    # Spread over the window: every tenth of it holds some.
    assert {int(p // 6) for p in phases} == set(range(10))
    assert spread_phase("every_minute", "r0", 0.0) == 0.0


@pytest.mark.parametrize(
    ("spread", "window"), [(True, 60.0), (False, 0.0), ("10s", 10.0), ("60s", 60.0), (0, 0.0)]
)
def test_spread_window_is_the_interval_or_the_duration_given(spread: object, window: float) -> None:
    assert interval(minutes=1, spread=spread).timing.spread == window


def test_max_lateness_defaults_to_one_interval_but_at_least_a_second() -> None:
    assert interval(minutes=5).timing.max_lateness == 300.0
    assert interval(milliseconds=50).timing.max_lateness == 1.0
    assert interval(minutes=5, max_lateness="30s").timing.max_lateness == 30.0


@pytest.mark.parametrize(
    "params",
    [
        {"seconds": 10, "jitter": 10},
        {"seconds": 10, "jitter": "1m"},
        {"seconds": 10, "spread": -1},
        {"seconds": 10, "spread": "soon"},
        {"seconds": 10, "max_lateness": 0},
    ],
)
def test_bad_timing_params_are_rejected(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IntervalParams.model_validate(params)


def test_a_trigger_without_timing_gets_the_defaults() -> None:
    assert timing_of(object()) is NO_TIMING


# -- the grid's jumps ------------------------------------------------------------------------


def test_latest_fire_and_count_agree_with_stepping() -> None:
    t = interval(seconds=10, offset=2)
    assert t.latest_fire_at_or_before(1047.0, 1000.0) == 1042.0
    assert t.latest_fire_at_or_before(1012.0, 1000.0) == 1012.0
    assert t.latest_fire_at_or_before(1011.9, 1000.0) is None
    assert t.fires_between(1012.0, 1042.0, 1000.0) == 3
    assert t.fires_between(0.0, 1042.0, 1000.0) == 4
    assert count_fires(Stepwise(t), 1012.0, 1042.0, 1000.0) == 3


@given(
    step=st.floats(min_value=0.001, max_value=1e4),
    start=st.floats(min_value=0, max_value=1e7),
    a=st.floats(min_value=0, max_value=50),
    b=st.floats(min_value=0, max_value=50),
)
def test_grid_jumps_match_stepping(step: float, start: float, a: float, b: float) -> None:
    t = IntervalTrigger(IntervalParams(interval=step), id="t")
    after, upto = start + a * step, start + (a + b) * step
    assert t.fires_between(after, upto, start) == count_fires(Stepwise(t), after, upto, start)
    latest = t.latest_fire_at_or_before(upto, start)
    if latest is not None:
        assert latest <= upto
        assert t.next_fire_after(latest, start) > upto


# -- late and missed fires -------------------------------------------------------------------


def test_an_on_time_fire_runs() -> None:
    t = interval(seconds=10)
    assert resolve(t, 1010.0, 1010.002, 1000.0, lateness=0.002, max_lateness=10.0) == (
        Resolution(True, 0, 1010.0, 1020.0)
    )


def test_a_fire_later_than_max_lateness_is_missed() -> None:
    t = interval(minutes=10, max_lateness="30s")
    done = resolve(t, 1600.0, 1645.0, 1000.0, lateness=45.0, max_lateness=30.0)
    assert done == Resolution(False, 1, 1600.0, 2200.0)


def test_fires_passed_over_collapse_into_one_run_of_the_latest() -> None:
    t = interval(seconds=10)
    # Due at 1010, the loop came back at 1047.5: 1010, 1020, 1030 missed, 1040 runs.
    done = resolve(t, 1010.0, 1047.5, 1000.0, lateness=37.5, max_lateness=10.0)
    assert done == Resolution(True, 3, 1040.0, 1050.0)
    assert resolve(Stepwise(t), 1010.0, 1047.5, 1000.0, lateness=37.5, max_lateness=10.0) == done


def test_the_latest_is_missed_too_when_it_is_late_itself() -> None:
    t = interval(seconds=10)
    done = resolve(t, 1010.0, 1047.5, 1000.0, lateness=37.5, max_lateness=5.0)
    assert done == Resolution(False, 4, 1040.0, 1050.0)


def test_without_max_lateness_a_late_fire_still_runs() -> None:
    t = interval(seconds=10)
    assert resolve(t, 1010.0, 1019.0, 1000.0, lateness=9.0, max_lateness=None).fire


# -- the schedule, driven with fixed times ----------------------------------------------------


def schedule(trigger: IntervalTrigger, *, phase: float = 0.0, seed: int = 1) -> Schedule:
    s = Schedule(
        "k",
        trigger,
        [],
        timing=trigger.timing,
        phase=phase,
        start=1000.0,
        on_missed=lambda *_: None,
        rng=random.Random(seed),
    )
    s.place(trigger.first_fire(1000.0))
    return s


def test_jitter_delays_each_fire_but_never_moves_the_grid() -> None:
    s = schedule(interval(seconds=10, jitter=2))
    dues = []
    for _ in range(50):
        assert s.point is not None
        dues.append(s.due - s.point)
        point, lateness, missed = s.advance(s.due + 0.001)
        assert point is not None
        assert lateness == pytest.approx(0.001)
        assert missed == 0
    assert s.point == 1510.0
    assert all(0 <= d < 2 for d in dues)
    assert len(set(dues)) == 50


def test_a_jitter_close_to_the_interval_never_drops_a_fire() -> None:
    s = schedule(interval(seconds=5, jitter=4.9), seed=3)
    ran = 0
    for _ in range(200):
        assert s.point is not None
        point, _, missed = s.advance(s.due + 0.25)  # every fire handled 0.25 s late
        assert missed == 0
        ran += point is not None
    assert ran == 200


def test_a_phase_shifts_every_fire() -> None:
    s = schedule(interval(seconds=10), phase=3.25)
    assert s.due == 1013.25
    s.advance(1013.25)
    assert (s.point, s.due) == (1020.0, 1023.25)


@given(
    step=st.floats(min_value=0.01, max_value=1000),
    phase=st.floats(min_value=0, max_value=0.999),
    jitter=st.floats(min_value=0, max_value=0.999),
    max_lateness=st.floats(min_value=0.001, max_value=5),
    delays=st.lists(st.floats(min_value=0, max_value=7), min_size=1, max_size=30),
    seed=st.integers(0, 1000),
)
def test_fires_increase_stay_on_the_grid_and_account_for_every_point(
    step: float,
    phase: float,
    jitter: float,
    max_lateness: float,
    delays: list[float],
    seed: int,
) -> None:
    trigger = IntervalTrigger(
        IntervalParams(interval=step, jitter=jitter * step, max_lateness=max_lateness * step),
        id="t",
    )
    s = schedule(trigger, phase=phase * step, seed=seed)
    ran: list[float] = []
    accounted = 0
    now = 0.0
    for delay in delays:
        assert s.point is not None
        due, point = s.due, s.point
        assert point + phase * step <= due < point + phase * step + jitter * step + 1e-9
        now = due + delay * step
        fired, lateness, missed = s.advance(now)
        assert lateness == pytest.approx(now - due)
        accounted += missed
        if fired is not None:
            ran.append(fired + phase * step)
            accounted += 1
        assert s.point is not None
        # The next point is still to come, at its latest jittered time at least.
        assert s.point + phase * step + jitter * step > now - 1e-9 * step
    # Strictly increasing, never repeated, each on the grid.
    assert all(b > a for a, b in itertools.pairwise(ran))
    for fired in ran:
        k = round((fired - phase * step - 1000.0) / step)
        assert abs(1000.0 + k * step + phase * step - fired) <= 1e-6 * max(1.0, fired)
    # Every grid point passed is either run or counted missed: none lost, none twice.
    assert s.point is not None
    passed = trigger.fires_between(1000.0, s.point - step / 2, 1000.0)
    assert accounted == passed


# -- after a restart -------------------------------------------------------------------------


def test_a_quick_restart_has_nothing_overdue() -> None:
    t = interval(minutes=10)
    # Last fire at 1600 (grid 1000 + 600k), back at 2000: the next point, 2200, waits.
    assert overdue(t, 1600.0, 2000.0, 1000.0, allowed=None) is None
    assert t.next_fire_after(2000.0, 1000.0) == 2200.0


def test_downtime_gives_at_most_one_catch_up_within_the_deadline() -> None:
    t = interval(minutes=10)
    # Down from just after 1600 to 5000: 2200, 2800, 3400, 4000, 4600 passed.
    assert overdue(t, 1600.0, 5000.0, 1000.0, allowed=600.0) == Resolution(True, 4, 4600.0, 5200.0)
    # The latest is 400 s late: past a 5-minute deadline, so all five are missed.
    assert overdue(t, 1600.0, 5000.0, 1000.0, allowed=300.0) == Resolution(False, 5, 4600.0, 5200.0)
    # No deadline configured: no catch-up at all.
    assert overdue(t, 1600.0, 5000.0, 1000.0, allowed=-math.inf) == Resolution(
        False, 5, 4600.0, 5200.0
    )
