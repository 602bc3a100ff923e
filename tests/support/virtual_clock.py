"""An asyncio event loop on a virtual clock: idle waits for timers take no real time.

``VirtualClockLoop`` is a ``SelectorEventLoop`` whose :meth:`~VirtualClockLoop.time` is a
virtual monotonic clock (it starts at ``start``, 0.0 by default, and moves only as described
below). Everything that schedules by ``loop.time()`` (``asyncio.sleep``, ``call_later``,
``call_at``, ``asyncio.timeout``, ``asyncio.wait_for``, ``asyncio.wait(timeout=...)``) runs in
virtual time: a test that sleeps an hour takes milliseconds, and the times it sees are exact.

The rules, applied each time the loop would wait in its selector (nothing is ready to run):

1. Poll the selector without waiting. Any I/O that is ready (a socket, a thread's
   ``call_soon_threadsafe`` wake-up) is handled first and the clock does not move.
2. While work submitted through :meth:`run_in_executor` is in flight (``asyncio.to_thread``,
   ``loop.getaddrinfo``, sync pipes' worker threads; the call still runs, or its result has not
   reached the loop yet), wait for real I/O up to ``thread_wait`` real seconds (default
   :data:`THREAD_WAIT`) before the clock may move: a thread that finishes within that much
   real time takes no virtual time at all. A thread that takes longer does not stop the
   clock: after each such wait the loop goes on to rule 3, so a timeout around a slow thread
   still expires. Threads started some other way (``threading.Thread``) are not known to the
   loop: the clock does not wait for them.
3. If a timer is scheduled, the clock jumps to the earliest timer's time at once and the
   timer runs. The clock never goes backwards and never passes a timer without running it.
4. With no timer and nothing ready, the loop blocks in the selector for real I/O (sockets,
   signals, threads' wake-ups), exactly as a normal loop does; the clock does not move.

So virtual time moves only when the loop would otherwise sleep until a timer, and then moves
exactly to that timer. Code that blocks the loop (``time.sleep``) or measures real time
(``time.monotonic()``, ``time.time()``) does not see the virtual clock: such tests belong on
a normal loop.

:meth:`~VirtualClockLoop.wall` is a wall clock tied to the virtual one: a fixed POSIX time
(``wall_start``, :data:`WALL_START` by default) plus the virtual time elapsed since the loop
was made, for code that takes a ``wall_clock=`` callable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import selectors
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["THREAD_WAIT", "WALL_START", "VirtualClockLoop"]

T = TypeVar("T")

WALL_START = 1_750_000_000.0
"""The default POSIX time of :meth:`VirtualClockLoop.wall` at virtual time zero
(2025-06-15 15:06:40 UTC)."""

THREAD_WAIT = 0.05
"""Default real seconds to wait for an executor thread before the clock may jump (rule 2)."""


class _ExecutorCall:
    """One call submitted through ``run_in_executor``: in flight until its result reached
    the loop, or, when its future was cancelled, until the call itself returned."""

    __slots__ = ("finished", "future", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.future: asyncio.Future[Any] | None = None

    def in_flight(self) -> bool:
        if self.started and not self.finished:
            return True
        return self.future is None or not self.future.done()


class _JumpingSelector(selectors.BaseSelector):
    """A real selector whose ``select`` applies the virtual clock's rules."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # The loop asks for timeout 0 when callbacks are ready, None when there is no timer,
        # else the (virtual) time until its earliest timer.
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        loop = self._loop
        if loop.executor_busy():
            ready = self._real.select(None if timeout is None else loop.thread_wait)
            if ready:
                return ready
        if timeout is None:
            return self._real.select(None)
        loop._jump(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock (the rules are in the module docstring)."""

    def __init__(
        self,
        *,
        start: float = 0.0,
        wall_start: float = WALL_START,
        thread_wait: float = THREAD_WAIT,
    ) -> None:
        self._virtual_start = start
        self._virtual_now = start
        self._wall_start = wall_start
        self.thread_wait = thread_wait
        """Real seconds to wait for an executor thread before the clock may jump."""
        self._executor_calls: list[_ExecutorCall] = []
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """The virtual monotonic time."""
        return self._virtual_now

    def wall(self) -> float:
        """A POSIX time: ``wall_start`` plus the virtual time elapsed since the loop was made."""
        return self._wall_start + (self._virtual_now - self._virtual_start)

    def executor_busy(self) -> bool:
        """True while a call submitted through :meth:`run_in_executor` is in flight."""
        calls = [call for call in self._executor_calls if call.in_flight()]
        self._executor_calls = calls
        return bool(calls)

    def run_in_executor(  # type: ignore[override]
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[..., T],
        *args: Any,
    ) -> asyncio.Future[T]:
        if inspect.iscoroutinefunction(func) or inspect.iscoroutine(func):
            raise TypeError("coroutines cannot be used with run_in_executor()")
        call = _ExecutorCall()
        target: Callable[..., T] = func
        if executor is None or isinstance(executor, concurrent.futures.ThreadPoolExecutor):

            def target(*call_args: Any) -> T:
                call.started = True
                try:
                    return func(*call_args)
                finally:
                    call.finished = True

        future = super().run_in_executor(executor, target, *args)
        call.future = future
        self._executor_calls.append(call)
        return future

    def _jump(self, timeout: float) -> None:
        """Move the clock to the earliest timer: the loop asked to wait ``timeout`` for it."""
        now = self._virtual_now
        target = now + timeout
        # The loop's timer heap gives the exact time (``now + timeout`` may be off by a
        # rounding error, and the loop caps ``timeout`` at a day).
        scheduled: list[asyncio.TimerHandle] | None = getattr(self, "_scheduled", None)
        if scheduled:
            target = scheduled[0].when()
        self._virtual_now = max(now, target)
