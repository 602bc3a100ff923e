"""Shared test set-up: the ``virtual_clock`` marker and fixture.

A test runs on a :class:`~tests.support.virtual_clock.VirtualClockLoop` (timers fire in
virtual time: no real sleeping) when it is marked ``@pytest.mark.virtual_clock`` (or its
module sets ``pytestmark = pytest.mark.virtual_clock``) or when it asks for the
``virtual_clock`` fixture, which is that running loop::

    async def test_an_hour_passes(virtual_clock: VirtualClockLoop) -> None:
        await asyncio.sleep(3600)
        assert virtual_clock.time() == 3600

The loop is chosen through pytest-asyncio's ``pytest_asyncio_loop_factories`` hook: every
other async test gets ``asyncio.new_event_loop()``, the loop it would get anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
from tests.support.virtual_clock import VirtualClockLoop

MARKER = "virtual_clock"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: run this async test on a VirtualClockLoop (tests/support/virtual_clock.py):"
        " timers fire in virtual time, without real sleeping",
    )


def wants_virtual_clock(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None or MARKER in getattr(
        item, "fixturenames", ()
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """One loop factory per async test: the virtual clock for those that opt in."""
    if wants_virtual_clock(item):
        return {MARKER: VirtualClockLoop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
async def virtual_clock() -> VirtualClockLoop:
    """The running VirtualClockLoop (asking for this fixture puts the test on it)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop), "virtual_clock needs an async test"
    return loop
