"""PipeRunner: one runner's state, its non-overlap guard, and the execution of its pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
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
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.stats = RunnerStats()
        self.last_result: PipeResult | None = None
        self._services = services
        self._env = env
        self._slots = slots
        self._task: asyncio.Task[PipeResult] | None = None
        self._started_at = 0.0
        self._current_trigger: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def task(self) -> asyncio.Task[PipeResult] | None:
        return self._task

    def fire(self, trigger: TriggerRef | None) -> asyncio.Task[PipeResult] | None:
        """Start an execution now, or skip this fire if one is still running."""
        if self._task is not None:
            self.stats.skips += 1
            elapsed = time.monotonic() - self._started_at
            events.emit(
                logging.INFO,
                events.RUN_SKIPPED,
                f"runner {self.id!r}: fire of {trigger or 'start'!s} skipped, the previous run "
                f"({self._current_trigger or 'start'}) has been running for {elapsed:.3f}s",
                runner=self.id,
                trigger=trigger,
                running_ms=round(elapsed * 1000, 3),
            )
            return None
        self._started_at = time.monotonic()
        self._current_trigger = trigger
        task = asyncio.get_running_loop().create_task(
            self._execute(trigger), name=f"otai-run:{self.id}"
        )
        self._task = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[PipeResult]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled():
            return
        task.exception()  # _execute never raises; consume to keep asyncio quiet regardless

    async def _execute(self, trigger: TriggerRef | None) -> PipeResult:
        if self._slots is not None:
            async with self._slots:
                return await self._run(trigger)
        return await self._run(trigger)

    async def _run(self, trigger: TriggerRef | None) -> PipeResult:
        self.stats.runs += 1
        started = time.monotonic()
        events.emit(
            logging.INFO,
            events.RUN_STARTED,
            f"runner {self.id!r} started (trigger {trigger or 'start'!s})",
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
                f"runner {self.id!r} cancelled after {elapsed:.3f}s",
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
        duration_ms = round(elapsed * 1000, 3)
        if result.failed:
            self.stats.failures += 1
            error = _first_error(run, result)
            events.emit(
                logging.ERROR,
                events.RUN_FAILED,
                f"runner {self.id!r} failed after {duration_ms}ms: {result.message}",
                exc=None if isinstance(error, PipeError) else error,
                runner=self.id,
                trigger=trigger,
                duration_ms=duration_ms,
                error=result.message,
            )
        else:
            events.emit(
                logging.INFO,
                events.RUN_FINISHED,
                f"runner {self.id!r} {result.status} in {duration_ms}ms",
                runner=self.id,
                trigger=trigger,
                duration_ms=duration_ms,
                status=result.status,
            )
        return result


def _first_error(run: RunContext, result: PipeResult) -> BaseException | None:
    """The exception behind a failure: the run's own, else the first failed step's."""
    if result.error is not None:
        return result.error
    for step in run.results.values():
        if step.failed and step.error is not None:
            return step.error
    return None
