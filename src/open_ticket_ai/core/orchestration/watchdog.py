"""LoopWatchdog: notices when the event loop is blocked, and says who blocked it.

The loop beats (one cheap timer callback every quarter of the threshold); a thread checks
the beat. When it is older than the threshold, the thread looks at the loop thread's stack
(``sys._current_frames``, a read-only look) for the runner and the step being executed and
the line it is stuck on, and logs ``loop.blocked`` once per blocked stretch. Nothing is
added to the run path: the engine's own frames say where it is.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from types import FrameType, TracebackType

from open_ticket_ai.core.orchestration import events
from open_ticket_ai.core.orchestration.scheduled_runner import PipeRunner
from open_ticket_ai.core.pipes.run import PipeSpec, execute_pipe

__all__ = ["LoopWatchdog", "blocked_at"]

_RUN_CODE = PipeRunner._run.__code__
_STEP_CODE = execute_pipe.__code__


class LoopWatchdog:
    """Logs ``loop.blocked`` (``blocked_ms``, ``runner``, ``step``, ``where``) when the loop
    it was started on does not run a callback for longer than ``threshold`` seconds."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
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
        runner, step, where = blocked_at(frame)
        self.reports += 1
        events.emit(
            logging.WARNING,
            events.LOOP_BLOCKED,
            "the event loop has been blocked for %.3fs (runner %s, step %s, at %s)",
            blocked,
            runner,
            step,
            where,
            blocked_ms=round(blocked * 1000, 3),
            runner=runner,
            step=step,
            where=where,
        )


def blocked_at(frame: FrameType | None) -> tuple[str | None, str | None, str | None]:
    """The runner and step (config path) a stack is executing, and its innermost line."""
    if frame is None:
        return None, None, None
    code = frame.f_code
    where = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
    runner: str | None = None
    step: str | None = None
    current: FrameType | None = frame
    while current is not None:
        if step is None and current.f_code is _STEP_CODE:
            spec = current.f_locals.get("spec")
            if isinstance(spec, PipeSpec):
                step = spec.path
        elif current.f_code is _RUN_CODE:
            owner = current.f_locals.get("self")
            if isinstance(owner, PipeRunner):
                runner = owner.id
            break
        current = current.f_back
    return runner, step, where
