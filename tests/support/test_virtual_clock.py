"""The virtual-clock event loop: timers in virtual time, threads and sockets still real.

Only virtual times and orders are asserted: never how much real time something took.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from tests.support.virtual_clock import WALL_START, VirtualClockLoop


@pytest.mark.virtual_clock
async def test_the_marker_runs_the_test_on_the_virtual_clock() -> None:
    assert isinstance(asyncio.get_running_loop(), VirtualClockLoop)


async def test_other_tests_keep_a_normal_loop() -> None:
    assert not isinstance(asyncio.get_running_loop(), VirtualClockLoop)


async def test_an_hour_of_sleep_is_an_hour_of_virtual_time(virtual_clock: VirtualClockLoop) -> None:
    assert asyncio.get_running_loop() is virtual_clock
    start = virtual_clock.time()
    await asyncio.sleep(3600)
    assert virtual_clock.time() == start + 3600


async def test_timers_run_in_order_each_at_its_own_time(virtual_clock: VirtualClockLoop) -> None:
    start = virtual_clock.time()
    seen: list[tuple[str, float]] = []

    def note(name: str) -> None:
        seen.append((name, virtual_clock.time() - start))

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        note(name)

    virtual_clock.call_later(2.5, note, "later 2.5")
    virtual_clock.call_at(start + 0.5, note, "at 0.5")
    cancelled = virtual_clock.call_later(1.0, note, "cancelled")
    tasks = [asyncio.create_task(sleeper(name, s)) for name, s in [("c", 3), ("a", 1), ("b", 2)]]
    cancelled.cancel()
    await asyncio.gather(*tasks)
    assert seen == [("at 0.5", 0.5), ("a", 1), ("b", 2), ("later 2.5", 2.5), ("c", 3)]
    assert virtual_clock.time() == start + 3


async def test_a_day_long_timer_is_reached_in_one_jump(virtual_clock: VirtualClockLoop) -> None:
    start = virtual_clock.time()
    await asyncio.sleep(3 * 86400 + 0.25)  # past the loop's one-day cap on a selector wait
    assert virtual_clock.time() == start + 3 * 86400 + 0.25


async def test_wait_for_expires_in_virtual_time(virtual_clock: VirtualClockLoop) -> None:
    start = virtual_clock.time()
    never = asyncio.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(never.wait(), 30)
    assert virtual_clock.time() == start + 30
    assert await asyncio.wait_for(asyncio.sleep(5, result="done"), 10) == "done"
    assert virtual_clock.time() == start + 35


async def test_asyncio_timeout_expires_in_virtual_time(virtual_clock: VirtualClockLoop) -> None:
    start = virtual_clock.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            await asyncio.sleep(100)
    assert virtual_clock.time() == start + 2
    done, pending = await asyncio.wait([asyncio.ensure_future(asyncio.sleep(9))], timeout=4)
    assert not done
    assert virtual_clock.time() == start + 6
    for task in pending:
        task.cancel()


async def test_the_wall_clock_follows_the_virtual_one(virtual_clock: VirtualClockLoop) -> None:
    assert virtual_clock.wall() == WALL_START + virtual_clock.time()
    await asyncio.sleep(90)
    assert virtual_clock.wall() == WALL_START + 90
    other = VirtualClockLoop(wall_start=1000.0, start=50.0)
    try:
        assert other.time() == 50.0
        assert other.wall() == 1000.0
    finally:
        other.close()


async def test_to_thread_work_completes_and_its_result_arrives(
    virtual_clock: VirtualClockLoop,
) -> None:
    # A generous wait, so that a loaded machine cannot start the thread too late: the far
    # timeout must not fire while the thread's result is on its way.
    virtual_clock.thread_wait = 60.0
    start = virtual_clock.time()
    caller = threading.get_ident()
    result = await asyncio.wait_for(asyncio.to_thread(lambda: threading.get_ident() * 2), 3600)
    assert result != caller * 2  # it ran in another thread
    assert virtual_clock.time() == start  # no timer ran: the result came first
    assert not virtual_clock.executor_busy()


async def test_a_thread_may_call_back_into_the_loop(virtual_clock: VirtualClockLoop) -> None:
    start = virtual_clock.time()
    answer: asyncio.Future[int] = virtual_clock.create_future()

    def from_thread() -> None:
        virtual_clock.call_soon_threadsafe(answer.set_result, 42)

    await asyncio.to_thread(from_thread)
    assert await answer == 42
    assert virtual_clock.time() == start


async def test_a_thread_that_does_not_finish_still_lets_a_timeout_expire(
    virtual_clock: VirtualClockLoop,
) -> None:
    virtual_clock.thread_wait = 0.001
    start = virtual_clock.time()
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(release.wait, 60), 5)
        assert virtual_clock.time() == start + 5
        assert virtual_clock.executor_busy()  # the thread still runs: it cannot be cancelled
    finally:
        release.set()
    while virtual_clock.executor_busy():  # noqa: ASYNC110 (no event tells the thread's end)
        await asyncio.sleep(0.01)
    assert virtual_clock.time() >= start + 5


async def test_a_loopback_tcp_echo_works(virtual_clock: VirtualClockLoop) -> None:
    start = virtual_clock.time()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for text in (b"hello\n", b"virtual clock\n"):
            writer.write(text)
            await writer.drain()
            replies.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
    assert replies == [b"HELLO\n", b"VIRTUAL CLOCK\n"]
    assert virtual_clock.time() == start


def test_coroutines_are_refused_by_run_in_executor() -> None:
    loop = VirtualClockLoop()
    try:

        async def work() -> None:
            pass

        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.run_in_executor(None, work)
    finally:
        loop.close()
