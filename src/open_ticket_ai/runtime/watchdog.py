"""LoopWatchdog: notices when the event loop is blocked, and says who blocked it.

The loop beats (one cheap timer callback every quarter of the threshold); a thread checks
the beat. When it is older than the threshold, the thread looks at the loop thread's stack
(``sys._current_frames``, a read-only look) for the line it is stuck on, and at the task
running on the loop for its context variables: the runner (set by the runner for each run)
and the step (set by the pipe engine for each step). It publishes ``loop.blocked`` once per
blocked stretch.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from open_ticket_ai.core.pipes.run import CURRENT_STEP
from open_ticket_ai.runtime.events import REPORT_EVERY, EventBus, LoopBlocked, LoopError
from open_ticket_ai.runtime.runner import CURRENT_RUNNER, RUN_CONTEXTS

__all__ = ["LoopErrorReporter", "LoopWatchdog", "blocked_at"]


class LoopErrorReporter:
    """The event loop's exception handler while the orchestrator runs: each problem the loop
    reports goes on the bus as ``loop.error``, the same one at most once per ``every``
    seconds with the count of those left out. Out of file descriptors, asyncio's accept loop
    reports a failed ``accept()`` every second for as long as it lasts: one line a minute."""

    _KEEP = 256
    """Problems remembered at most (they are a handful of fixed messages in practice)."""

    def __init__(
        self,
        bus: EventBus,
        *,
        every: float = REPORT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.every = every
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._previous: dict[asyncio.AbstractEventLoop, Any] = {}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous[loop] = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop in self._previous:
            loop.set_exception_handler(self._previous.pop(loop))

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        problem = str(context.get("message") or "unhandled error")
        key = (problem, type(error).__name__)
        now = self._clock()
        last, left_out = self._seen.get(key, (-math.inf, 0))
        if now - last < self.every:
            self._seen[key] = (last, left_out + 1)
            return
        if len(self._seen) >= self._KEEP and key not in self._seen:
            self._seen.clear()
        self._seen[key] = (now, 0)
        self.bus.publish(LoopError(problem=problem, error=error, repeated=left_out))


class LoopWatchdog:
    """Logs ``loop.blocked`` (``blocked_ms``, ``runner``, ``step``, ``where``) when the loop
    it was started on does not run a callback for longer than ``threshold`` seconds."""

    def __init__(self, threshold: float, bus: EventBus) -> None:
        self.threshold = threshold
        self.bus = bus
        self.period = min(threshold / 4, 0.25)
        self._beat = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_thread = 0
        self.reports = 0

    def __enter__(self) -> LoopWatchdog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start beating on the running loop and watching from a thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_beat()
        self._thread = threading.Thread(target=self._watch, name="otai-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _on_beat(self) -> None:
        self._beat = time.monotonic()
        self._handle = self._loop.call_later(self.period, self._on_beat)

    def _watch(self) -> None:
        reported = 0.0
        while not self._stop.wait(self.period):
            beat = self._beat
            blocked = time.monotonic() - beat
            if blocked > self.threshold and beat != reported:
                reported = beat
                self._report(blocked)

    def _report(self, blocked: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        runner, step, where = blocked_at(self._loop, frame)
        self.reports += 1
        self.bus.publish(LoopBlocked(blocked=blocked, runner=runner, step=step, where=where))


def blocked_at(
    loop: asyncio.AbstractEventLoop, frame: FrameType | None
) -> tuple[str | None, str | None, str | None]:
    """The runner and step (config path) that the task running on ``loop`` executes, read
    from that task's context variables, and the innermost line of the loop thread's stack."""
    where: str | None = None
    if frame is not None:
        code = frame.f_code
        where = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
    task = asyncio.current_task(loop)  # a dictionary look-up: safe from another thread
    if task is None:
        return None, None, where
    get_context = getattr(task, "get_context", None)  # Python 3.12+
    context: contextvars.Context | None = (
        get_context() if get_context is not None else RUN_CONTEXTS.get(task)
    )
    if context is None:
        return None, None, where
    return context.get(CURRENT_RUNNER), context.get(CURRENT_STEP), where
