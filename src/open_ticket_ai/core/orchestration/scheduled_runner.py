"""PipeRunner: one runner's state, its non-overlap guard, and the execution of its pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from open_ticket_ai.core.orchestration import events
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import RunContext, TriggerRef, execute_pipe
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import PipeError

if TYPE_CHECKING:
    from open_ticket_ai.core.factory import RunnerSpec

__all__ = ["PipeRunner", "RunnerStats"]


@dataclass
class RunnerStats:
    """What a runner did: runs started, their failures, skipped fires, durations."""

    runs: int = 0
    failures: int = 0
    skips: int = 0
    cancelled: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    @property
    def mean_seconds(self) -> float:
        finished = self.runs - self.cancelled
        return self.total_seconds / finished if finished > 0 else 0.0


class PipeRunner:
    """Runs one runner's pipeline when a trigger fires, never two executions at once.

    A fire that arrives while the previous execution still runs is skipped (logged, counted).
    Whatever the pipeline raises is caught, logged with the traceback and counted; the runner
    keeps its schedule. The runner owns its state; the pipeline is built fresh for every run.
    """

    def __init__(
        self,
        spec: RunnerSpec,
        *,
        services: Mapping[str, Service[Any]],
        env: Mapping[str, str],
        slots: asyncio.Semaphore | None = None,
        on_finished: Callable[[str, PipeResult], None] | None = None,
    ) -> None:
        self.spec = spec
        self._on_finished = on_finished
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
        self._current_trigger: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def task(self) -> asyncio.Task[PipeResult] | None:
        return self._task

    @property
    def running_for(self) -> float:
        """Seconds the current run has been running (0 when idle)."""
        return time.monotonic() - self._started_at if self._task is not None else 0.0

    def fire(self, trigger: TriggerRef | None) -> asyncio.Task[PipeResult] | None:
        """Start an execution now, or skip this fire if one is still running."""
        if self._task is not None:
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
            )
            return None
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
            self._task = None
        if task.cancelled():
            return
        task.exception()  # _execute never raises; consume to keep asyncio quiet regardless

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
        try:
            result = await execute_pipe(self.spec.pipeline, run)
        except asyncio.CancelledError:
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
            raise
        except Exception as exc:  # the engine reports failures as results; this is a bug guard
            result = PipeResult.failure(f"{type(exc).__name__}: {exc}", error=exc)
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
        self.stats.failures += 1
        duration_ms = round(elapsed * 1000, 3)
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


def _first_error(run: RunContext, result: PipeResult) -> BaseException | None:
    """The exception behind a failure: the run's own, else the first failed step's."""
    if result.error is not None:
        return result.error
    for step in run.results.values():
        if step.failed and step.error is not None:
            return step.error
    return None
