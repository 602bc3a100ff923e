"""PipeRunner: one runner's state, its non-overlap guard, and the execution of its pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.orchestration import events
from open_ticket_ai.core.orchestration.runner_stats import RunnerStats
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import RunContext, TriggerRef, execute_pipe
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import PipeError

if TYPE_CHECKING:
    from open_ticket_ai.core.factory import RunnerSpec

__all__ = ["PipeRunner", "RunnerStats"]


_NOTHING: Any = object()


class PipeRunner:
    """Runs one runner's pipeline when a trigger fires, never two executions at once.

    A fire that arrives while the previous execution still runs is skipped (logged, counted),
    or with ``overlap: queue_one`` kept (one at most) to run right after it. Whatever the
    pipeline raises is caught, logged with the traceback and counted; the runner keeps its
    schedule. With a ``timeout`` a run is cancelled when it takes longer and recorded as
    timed out; a run that ignores the cancellation for ``stuck_grace`` more is reported stuck
    and abandoned, and the runner is free again. The runner owns its state; the pipeline is
    built fresh for every run.
    """

    def __init__(
        self,
        spec: RunnerSpec,
        *,
        services: Mapping[str, Service[Any]],
        env: Mapping[str, str],
        slots: asyncio.Semaphore | None = None,
        on_finished: Callable[[str, PipeResult], None] | None = None,
        on_fire: Callable[[str, TriggerRef | None], None] | None = None,
        stuck_grace: float = 5.0,
    ) -> None:
        self.spec = spec
        self._on_finished = on_finished
        self._on_fire = on_fire
        self._fires = 0
        self.run_id: str | None = None
        """The id of the current (or last) run: ``RUNNER-N``."""
        self.id = spec.id
        self.stats = RunnerStats()
        self.last_result: PipeResult | None = None
        self._services = services
        self._env = env
        self._slots = slots
        self._task: asyncio.Task[PipeResult] | None = None
        self._task_name = f"otai-run:{self.id}"
        self.accepting = True
        """False once shutdown began: a fire still waiting for a slot then does not run."""
        self._started_at = 0.0
        self._current_trigger: TriggerRef | None = None
        self._queue_one = spec.overlap == "queue_one"
        self._queued: TriggerRef | None = _NOTHING
        self._timeout = spec.timeout
        self.stuck_grace = stuck_grace
        self._expired: set[asyncio.Task[PipeResult]] = set()
        self.abandoned: set[asyncio.Task[PipeResult]] = set()
        """Runs that ignored their timeout's cancellation and were left behind."""

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def task(self) -> asyncio.Task[PipeResult] | None:
        return self._task

    @property
    def current_trigger(self) -> TriggerRef | None:
        """The trigger of the current (or last) run; None for a start-up run."""
        return self._current_trigger

    @property
    def can_queue(self) -> bool:
        """True when a fire now would wait for the current run instead of being skipped."""
        return self._queue_one and self._queued is _NOTHING

    @property
    def running_for(self) -> float:
        """Seconds the current run has been running (0 when idle)."""
        return time.monotonic() - self._started_at if self._task is not None else 0.0

    def fire(self, trigger: TriggerRef | None) -> asyncio.Task[PipeResult] | None:
        """Start an execution now; or, if one is still running, queue this fire (``overlap:
        queue_one``, one at most) or skip it. Returns the new run's task, if one started."""
        if self._on_fire is not None:
            self._on_fire(self.id, trigger)
        if self._task is not None:
            if self._queue_one and self._queued is _NOTHING:
                self._queued = trigger
                events.emit(
                    logging.INFO,
                    events.RUN_QUEUED,
                    "runner %r: fire of %s queued, runs when the current run (%s) ends",
                    self.id,
                    trigger or "start",
                    self.run_id,
                    runner=self.id,
                    trigger=trigger,
                )
                return None
            self.stats.skips += 1
            elapsed = time.monotonic() - self._started_at
            events.emit(
                logging.INFO,
                events.RUN_SKIPPED,
                "runner %r: fire of %s skipped, the previous run (%s) has been running for %.3fs",
                self.id,
                trigger or "start",
                self._current_trigger or "start",
                elapsed,
                runner=self.id,
                trigger=trigger,
                running_ms=round(elapsed * 1000, 3),
                reason="queue_full" if self._queue_one else "running",
            )
            return None
        return self._start(trigger)

    def note_missed(self, trigger: str, count: int, late: float, reason: str = "late") -> None:
        """Record ``count`` fires of ``trigger`` that did not run (``run.missed``)."""
        self.stats.missed += count
        events.emit(
            logging.WARNING,
            events.RUN_MISSED,
            "runner %r: %d fire(s) of %s missed (%s, %.3fs late)",
            self.id,
            count,
            trigger,
            reason,
            late,
            runner=self.id,
            trigger=trigger,
            count=count,
            late_ms=round(late * 1000, 3),
            reason=reason,
        )

    def _start(self, trigger: TriggerRef | None) -> asyncio.Task[PipeResult]:
        self._started_at = time.monotonic()
        self._current_trigger = trigger
        self._fires += 1
        self.run_id = f"{self.id}-{self._fires}"
        run = self._run(trigger) if self._slots is None else self._run_in_slot(trigger)
        task = asyncio.get_running_loop().create_task(run, name=self._task_name)
        self._task = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[PipeResult]) -> None:
        if self._task is task:
            self._release()
        if not task.cancelled():
            task.exception()  # _execute never raises; consume to keep asyncio quiet regardless

    def _release(self) -> None:
        """The runner is free: start the queued fire, if any."""
        self._task = None
        queued, self._queued = self._queued, _NOTHING
        if queued is _NOTHING:
            return
        if self.accepting:
            self._start(queued)
            return
        self.stats.skips += 1
        events.emit(
            logging.INFO,
            events.RUN_SKIPPED,
            "runner %r: queued fire of %s dropped, the orchestrator is stopping",
            self.id,
            queued or "start",
            runner=self.id,
            trigger=queued,
            reason="stopping",
        )

    def _time_out(self, task: asyncio.Task[PipeResult], trigger: TriggerRef | None) -> None:
        if task.done():
            return
        assert self._timeout is not None
        self.stats.timeouts += 1
        self._expired.add(task)
        events.emit(
            logging.ERROR,
            events.RUN_TIMEOUT,
            "runner %r timed out after %s; cancelling the run",
            self.id,
            format_duration(self._timeout),
            runner=self.id,
            trigger=trigger,
            timeout_ms=round(self._timeout * 1000, 3),
        )
        task.cancel()
        asyncio.get_running_loop().call_later(self.stuck_grace, self._check_stuck, task, trigger)

    def _check_stuck(self, task: asyncio.Task[PipeResult], trigger: TriggerRef | None) -> None:
        if task.done() or self._task is not task:
            return
        self.stats.stuck += 1
        self.abandoned.add(task)
        task.add_done_callback(self.abandoned.discard)
        events.emit(
            logging.ERROR,
            events.RUN_STUCK,
            "runner %r: run %s ignored cancellation for %s after its timeout; it is abandoned "
            "and the runner is free again",
            self.id,
            self.run_id,
            format_duration(self.stuck_grace),
            runner=self.id,
            trigger=trigger,
            run_id=self.run_id,
            running_ms=round((time.monotonic() - self._started_at) * 1000, 3),
        )
        self._release()

    async def _run_in_slot(self, trigger: TriggerRef | None) -> PipeResult:
        assert self._slots is not None
        async with self._slots:
            if not self.accepting:
                self.stats.skips += 1
                events.emit(
                    logging.INFO,
                    events.RUN_SKIPPED,
                    "runner %r: fire of %s dropped, the orchestrator is stopping",
                    self.id,
                    trigger or "start",
                    runner=self.id,
                    trigger=trigger,
                    reason="stopping",
                )
                return PipeResult.skip("skipped: the orchestrator is stopping")
            return await self._run(trigger)

    async def _run(self, trigger: TriggerRef | None) -> PipeResult:
        self.stats.runs += 1
        started = time.monotonic()
        # One level check per run: building the event fields costs more than the run itself
        # of a trivial pipeline.
        info = events.logger.isEnabledFor(logging.INFO)
        if info:
            events.emit(
                logging.INFO,
                events.RUN_STARTED,
                "runner %r started (trigger %s)",
                self.id,
                trigger or "start",
                runner=self.id,
                trigger=trigger,
            )
        run = RunContext(runner=self.id, trigger=trigger, services=self._services, env=self._env)
        if self._timeout is None:
            try:
                result = await execute_pipe(self.spec.pipeline, run)
            except asyncio.CancelledError:
                self._cancelled(trigger, started)
                raise
            except Exception as exc:  # the engine reports failures as results; a bug guard
                result = PipeResult.failure(f"{type(exc).__name__}: {exc}", error=exc)
        else:
            result = await self._run_with_timeout(run, trigger, started, self._timeout)
            if self.abandoned and asyncio.current_task() in self.abandoned:
                return result  # the runner moved on: this run's end changes nothing
        elapsed = time.monotonic() - started
        self.stats.total_seconds += elapsed
        self.stats.max_seconds = max(self.stats.max_seconds, elapsed)
        self.last_result = result
        if not result.failed:
            if info:
                duration_ms = round(elapsed * 1000, 3)
                events.emit(
                    logging.INFO,
                    events.RUN_FINISHED,
                    "runner %r %s in %sms",
                    self.id,
                    result.status,
                    duration_ms,
                    runner=self.id,
                    trigger=trigger,
                    duration_ms=duration_ms,
                    status=result.status,
                )
            if self._on_finished is not None:
                self._on_finished(self.id, result)
            return result
        duration_ms = round(elapsed * 1000, 3)
        if result.data.get("timed_out") is not True:
            self.stats.failures += 1
            error = _first_error(run, result)
            events.emit(
                logging.ERROR,
                events.RUN_FAILED,
                "runner %r failed after %sms: %s",
                self.id,
                duration_ms,
                result.message,
                exc=None if isinstance(error, PipeError) else error,
                runner=self.id,
                trigger=trigger,
                duration_ms=duration_ms,
                error=result.message,
            )
        if self._on_finished is not None:
            self._on_finished(self.id, result)
        return result

    async def _run_with_timeout(
        self, run: RunContext, trigger: TriggerRef | None, started: float, limit: float
    ) -> PipeResult:
        task = asyncio.current_task()
        assert task is not None
        deadline = asyncio.get_running_loop().call_later(limit, self._time_out, task, trigger)
        try:
            result = await execute_pipe(self.spec.pipeline, run)
        except asyncio.CancelledError:
            # Our own timeout's cancel becomes a result; anyone else's propagates.
            if task not in self._expired or task.uncancel() > 0:
                self._cancelled(trigger, started)
                raise
            result = _timed_out(limit)
        except Exception as exc:  # the engine reports failures as results; a bug guard
            result = PipeResult.failure(f"{type(exc).__name__}: {exc}", error=exc)
        finally:
            deadline.cancel()
        if task in self._expired:
            # Finished after its timeout all the same (it swallowed the cancellation).
            self._expired.discard(task)
            if task.cancelling():
                task.uncancel()
            result = _timed_out(limit)
        return result

    def _cancelled(self, trigger: TriggerRef | None, started: float) -> None:
        self.stats.cancelled += 1
        elapsed = time.monotonic() - started
        events.emit(
            logging.WARNING,
            events.RUN_CANCELLED,
            "runner %r cancelled after %.3fs",
            self.id,
            elapsed,
            runner=self.id,
            trigger=trigger,
            duration_ms=round(elapsed * 1000, 3),
        )


def _timed_out(timeout: float) -> PipeResult:
    return PipeResult.failure(
        f"timed out after {format_duration(timeout)}", data={"timed_out": True}
    )


def _first_error(run: RunContext, result: PipeResult) -> BaseException | None:
    """The exception behind a failure: the run's own, else the first failed step's."""
    if result.error is not None:
        return result.error
    for step in run.results.values():
        if step.failed and step.error is not None:
            return step.error
    return None
