"""PipeRunner: one runner's state, its non-overlap guard, and the execution of its pipeline."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.pipes.records import RunDeadline, RunJournal
from open_ticket_ai.core.pipes.result import PipeResult, PipeStatus
from open_ticket_ai.core.pipes.run import TASK_CONTEXTS, RunContext, TriggerRef, execute_pipe
from open_ticket_ai.core.services import Service
from open_ticket_ai.runtime.events import (
    EventBus,
    RunCancelled,
    RunEnded,
    RunFailed,
    RunFinished,
    RunMissed,
    RunOutcome,
    RunQueued,
    RunSkipped,
    RunStarted,
    RunStuck,
    RunTimeout,
    SkipReason,
    StepRetry,
    payload_size,
)
from open_ticket_ai.runtime.health import RunnerHealth
from open_ticket_ai.runtime.stats import RunnerStats

if TYPE_CHECKING:
    from open_ticket_ai.core.compiled import RunnerSpec

__all__ = ["CURRENT_RUNNER", "RUN_CONTEXTS", "PipeRunner", "RunnerStats"]


_NOTHING: Any = object()
_E = TypeVar("_E", bound=RunEnded)

CURRENT_RUNNER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "otai_current_runner", default=None
)
"""The runner whose run a task executes (the watchdog reads it from a blocked task)."""

RUN_CONTEXTS = TASK_CONTEXTS
"""The context each run's task (and each ``for_each`` item's) runs in, so that another thread
(the watchdog) can read the task's context variables (``Task.get_context`` exists only from
Python 3.12). An entry goes when its task is done."""


class PipeRunner:
    """Runs one runner's pipeline when a trigger fires, never two executions at once.

    A fire that arrives while the previous execution still runs is skipped (published as
    ``run.skipped``), or with ``overlap: queue_one`` kept (one at most) to run right after
    it. Whatever the pipeline raises is caught and published with the run's end; the runner
    keeps its schedule. With a ``timeout`` a run is cancelled when it takes longer and ends
    as timed out; a run that ignores the cancellation for ``stuck_grace`` more is reported
    stuck and abandoned, and the runner is free again. Every event goes to ``bus``; the
    pipeline is built fresh for every run.
    """

    def __init__(
        self,
        spec: RunnerSpec,
        *,
        services: Mapping[str, Service[Any]],
        env: Mapping[str, str],
        bus: EventBus | None = None,
        slots: asyncio.Semaphore | None = None,
        stuck_grace: float = 5.0,
        first_run: int = 1,
        dry_run: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.bus = bus if bus is not None else EventBus()
        self._fires = first_run - 1
        self.run_id: str | None = None
        """The id of the current (or last) run: ``RUNNER-N``, N counting on across restarts
        when a ledger keeps the runs."""
        self.id = spec.id
        self.stats = RunnerStats()
        self.last_result: PipeResult | None = None
        self.last_outcome: RunOutcome | None = None
        self._services = services
        self._env = env
        self._slots = slots
        self._dry_run = dry_run
        self._wall = wall_clock
        self._task: asyncio.Task[PipeResult] | None = None
        self._task_name = f"otai-run:{self.id}"
        self.accepting = True
        """False once shutdown began: a fire still waiting for a slot then does not run."""
        self.paused = False
        """True while paused (from the console): every fire is skipped (``run.skipped``,
        reason ``paused``); a run already running goes on."""
        self._started_at = 0.0
        self._current: _Run | None = None
        """The current (or last) run's start, as its end event will tell it."""
        self._scheduled: float | None = None
        self._current_trigger: TriggerRef | None = None
        self._queue_one = spec.overlap == "queue_one"
        self._queued: tuple[TriggerRef | None, float | None] = _NOTHING
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
    def can_queue(self) -> bool:
        """True when a fire now would wait for the current run instead of being skipped."""
        return self._queue_one and self._queued is _NOTHING

    @property
    def running_for(self) -> float:
        """Seconds the current run has been running (0 when idle)."""
        return time.monotonic() - self._started_at if self._task is not None else 0.0

    def health(self, now: float) -> RunnerHealth:
        """The runner's state at POSIX time ``now``: whether it runs (from the runner
        itself), its counts and its last run (from its stats)."""
        stats = self.stats
        running = self._task is not None
        return RunnerHealth(
            running=running,
            run_id=self.run_id if running else stats.last_run_id,
            running_since=now - self.running_for if running else None,
            runs=stats.runs,
            failures=stats.failures,
            skips=stats.skips,
            last_status=stats.last_status,
            last_outcome=stats.last_outcome,
            last_started=stats.last_started,
            last_duration=stats.last_duration,
            paused=self.paused,
        )

    def fire(
        self, trigger: TriggerRef | None, scheduled: float | None = None
    ) -> asyncio.Task[PipeResult] | None:
        """Start an execution now; or, if one is still running, queue this fire (``overlap:
        queue_one``, one at most) or skip it. ``scheduled`` is the POSIX time the fire was
        due (time triggers). Returns the new run's task, if one started."""
        if self.paused or not self.accepting:
            reason = SkipReason.PAUSED if self.accepting else SkipReason.STOPPING
            self.bus.publish(RunSkipped(runner=self.id, trigger=trigger, reason=reason))
            return None
        if self._task is not None:
            if self._queue_one and self._queued is _NOTHING:
                self._queued = (trigger, scheduled)
                self.bus.publish(
                    RunQueued(runner=self.id, trigger=trigger, current_run=self.run_id)
                )
                return None
            self.bus.publish(
                RunSkipped(
                    runner=self.id,
                    trigger=trigger,
                    reason=SkipReason.QUEUE_FULL if self._queue_one else SkipReason.RUNNING,
                    running_for=time.monotonic() - self._started_at,
                    current_trigger=self._current_trigger,
                )
            )
            return None
        return self._start(trigger, scheduled)

    def _step_retry(self, step: str, attempt: int, delay: float, error: str) -> None:
        self.bus.publish(
            StepRetry(
                runner=self.id,
                run_id=self.run_id,
                step=step,
                attempt=attempt,
                delay=delay,
                error=error,
            )
        )

    def note_missed(self, trigger: str, count: int, late: float, reason: str = "late") -> None:
        """Record ``count`` fires of ``trigger`` that did not run (``run.missed``)."""
        self.bus.publish(
            RunMissed(runner=self.id, trigger=trigger, count=count, late=late, reason=reason)
        )

    def _start(
        self, trigger: TriggerRef | None, scheduled: float | None
    ) -> asyncio.Task[PipeResult]:
        self._started_at = time.monotonic()
        self._current_trigger = trigger
        self._scheduled = scheduled
        self._fires += 1
        self.run_id = f"{self.id}-{self._fires}"
        run = self._run(trigger) if self._slots is None else self._run_in_slot(trigger)
        context = contextvars.copy_context()
        task = asyncio.get_running_loop().create_task(run, name=self._task_name, context=context)
        RUN_CONTEXTS[task] = context
        self._task = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[PipeResult]) -> None:
        RUN_CONTEXTS.pop(task, None)
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
        trigger, scheduled = queued
        if self.accepting:
            self._start(trigger, scheduled)
            return
        self.bus.publish(
            RunSkipped(runner=self.id, trigger=trigger, reason=SkipReason.STOPPING, queued=True)
        )

    def _time_out(self, task: asyncio.Task[PipeResult], trigger: TriggerRef | None) -> None:
        if task.done():
            return
        assert self._timeout is not None
        assert self.run_id is not None
        self._expired.add(task)
        self.bus.publish(
            RunTimeout(runner=self.id, trigger=trigger, run_id=self.run_id, timeout=self._timeout)
        )
        task.cancel()
        asyncio.get_running_loop().call_later(self.stuck_grace, self._check_stuck, task, trigger)

    def _check_stuck(self, task: asyncio.Task[PipeResult], trigger: TriggerRef | None) -> None:
        if task.done() or self._task is not task:
            return
        assert self.run_id is not None
        self.abandoned.add(task)
        task.add_done_callback(self.abandoned.discard)
        self.last_outcome = RunOutcome.STUCK
        run = self._current
        assert run is not None
        self.bus.publish(
            run.end(
                RunStuck,
                RunOutcome.STUCK,
                time.monotonic(),
                None,
                error=f"ignored cancellation after its timeout of {self._timeout}s",
                grace=self.stuck_grace,
            )
        )
        self._release()

    async def _run_in_slot(self, trigger: TriggerRef | None) -> PipeResult:
        assert self._slots is not None
        async with self._slots:
            return await self._run(trigger)

    async def _run(self, trigger: TriggerRef | None) -> PipeResult:
        if not self.accepting:
            # Fired, but the stop came before the run began (it waited for a slot, or for
            # the loop, blocked by another run): it does not begin now.
            self.bus.publish(
                RunSkipped(runner=self.id, trigger=trigger, reason=SkipReason.STOPPING)
            )
            return PipeResult.skip("skipped: the orchestrator is stopping")
        run_id = self.run_id
        assert run_id is not None
        CURRENT_RUNNER.set(self.id)  # the run's own task: its context ends with it
        limit = self.spec.deadline
        deadline = None
        if limit is not None:
            clock = asyncio.get_running_loop().time
            deadline = RunDeadline(clock() + limit, limit, clock)
        journal = RunJournal.recording(
            dry_run=self._dry_run, deadline=deadline, on_retry=self._step_retry
        )
        started = _Run(
            runner=self.id,
            trigger=trigger,
            run_id=run_id,
            started=time.monotonic(),
            started_wall=self._wall(),
            scheduled=self._scheduled,
            payload_size=payload_size(trigger.payload) if trigger is not None else None,
            journal=journal,
            dry_run=self._dry_run,
        )
        self._current = started
        if self.bus.wants(RunStarted):
            self.bus.publish(
                RunStarted(
                    runner=self.id,
                    trigger=trigger,
                    run_id=run_id,
                    started=started.started_wall,
                    scheduled=started.scheduled,
                    payload_size=started.payload_size,
                    dry_run=self._dry_run,
                )
            )
        run = RunContext(
            runner=self.id,
            trigger=trigger,
            services=self._services,
            env=self._env,
            journal=journal,
        )
        timed_out = False
        if self._timeout is None:
            try:
                result = await execute_pipe(self.spec.pipeline, run)
            except asyncio.CancelledError:
                self._cancelled(started)
                raise
            except Exception as exc:  # the engine reports failures as results; a bug guard
                result = PipeResult.failure(f"{type(exc).__name__}: {exc}", error=exc)
        else:
            result, timed_out = await self._run_with_timeout(run, started, self._timeout)
            if self.abandoned and asyncio.current_task() in self.abandoned:
                return result  # the runner moved on: this run's end changes nothing
        if deadline is not None and deadline.skipped and not timed_out:
            result = _past_deadline(result, deadline)
        self.last_result = result
        now = time.monotonic()
        results = run.results
        event: RunEnded
        status = result.status
        if timed_out:
            event = started.end(
                RunFailed, RunOutcome.TIMED_OUT, now, result, results, error=result.message
            )
        elif status is PipeStatus.SUCCEEDED:
            event = started.end(RunFinished, RunOutcome.SUCCEEDED, now, result, results)
        elif status is PipeStatus.FAILED:
            error = _first_error(run, result)
            event = started.end(
                RunFailed,
                RunOutcome.FAILED,
                now,
                result,
                results,
                error=result.message,
                exception=error,
            )
        else:
            event = started.end(RunFinished, RunOutcome.SKIPPED, now, result, results)
        self.last_outcome = event.outcome
        self.bus.publish(event)
        return result

    async def _run_with_timeout(
        self, run: RunContext, started: _Run, limit: float
    ) -> tuple[PipeResult, bool]:
        task = asyncio.current_task()
        assert task is not None
        trigger = started.trigger
        deadline = asyncio.get_running_loop().call_later(limit, self._time_out, task, trigger)
        try:
            result = await execute_pipe(self.spec.pipeline, run)
        except asyncio.CancelledError:
            # Our own timeout's cancel becomes a result; anyone else's propagates.
            if task not in self._expired or task.uncancel() > 0:
                self._cancelled(started)
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
            return _timed_out(limit), True
        return result, False

    def _cancelled(self, started: _Run) -> None:
        self.last_outcome = RunOutcome.CANCELLED
        self.bus.publish(
            started.end(
                RunCancelled,
                RunOutcome.CANCELLED,
                time.monotonic(),
                None,
                error="cancelled at shutdown",
            )
        )


class _Run:
    """What a run's end event repeats of its start (each end event is built from it)."""

    __slots__ = (
        "dry_run",
        "journal",
        "payload_size",
        "run_id",
        "runner",
        "scheduled",
        "started",
        "started_wall",
        "trigger",
    )

    def __init__(
        self,
        *,
        runner: str,
        trigger: TriggerRef | None,
        run_id: str,
        started: float,
        started_wall: float,
        scheduled: float | None,
        payload_size: int | None,
        journal: RunJournal,
        dry_run: bool,
    ) -> None:
        self.runner = runner
        self.trigger = trigger
        self.run_id = run_id
        self.started = started
        """Monotonic seconds, for the duration."""
        self.started_wall = started_wall
        self.scheduled = scheduled
        self.payload_size = payload_size
        self.journal = journal
        self.dry_run = dry_run

    def end(
        self,
        kind: type[_E],
        outcome: RunOutcome,
        now: float,
        result: PipeResult | None,
        results: Mapping[str, PipeResult] | None = None,
        **extra: Any,
    ) -> _E:
        """The end event ``kind`` of this run at monotonic time ``now``."""
        journal = self.journal
        steps = journal.steps
        actions = journal.actions
        decisions = journal.decisions
        return kind(
            runner=self.runner,
            trigger=self.trigger,
            run_id=self.run_id,
            outcome=outcome,
            started=self.started_wall,
            duration=now - self.started,
            scheduled=self.scheduled,
            payload_size=self.payload_size,
            result=result,
            results=results if results is not None else {},
            steps=tuple(steps) if steps else (),
            actions=tuple(actions) if actions else (),
            decisions=tuple(decisions) if decisions else (),
            dry_run=self.dry_run,
            **extra,
        )


def _past_deadline(result: PipeResult, deadline: RunDeadline) -> PipeResult:
    """The run's result when steps or items were not started for its deadline: a failure
    that says how many (and what failed besides)."""
    message = (
        f"passed its deadline of {format_duration(deadline.limit)}: "
        f"{deadline.skipped} steps or items not started"
    )
    if result.failed:
        message += f"; {result.message}"
    return PipeResult.failure(message, result.data, result.error)


def _timed_out(timeout: float) -> PipeResult:
    return PipeResult.failure(f"timed out after {format_duration(timeout)}")


def _first_error(run: RunContext, result: PipeResult) -> BaseException | None:
    """The exception behind a failure: the run's own, else the first failed step's."""
    if result.error is not None:
        return result.error
    for step in run.results.values():
        if step.failed and step.error is not None:
            return step.error
    return None
