"""Orchestrator: opens services, arms triggers, runs runners, and stops in two phases."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.factory import CompiledConfig
from open_ticket_ai.core.memory import freeze_long_lived
from open_ticket_ai.core.orchestration import events
from open_ticket_ai.core.orchestration.arming import Armer
from open_ticket_ai.core.orchestration.schedule import WALL_CLOCK_STEP, Schedule
from open_ticket_ai.core.orchestration.scheduled_runner import PipeRunner
from open_ticket_ai.core.orchestration.service_lifecycle import ServicesOpen
from open_ticket_ai.core.orchestration.state import StateStore
from open_ticket_ai.core.orchestration.trigger import (
    CallbackHost,
    EventTrigger,
    FireOutcome,
    TimeTrigger,
    Trigger,
)
from open_ticket_ai.core.orchestration.watchdog import LoopWatchdog
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import TriggerRef, worker_threads
from open_ticket_ai.errors import ComponentError

__all__ = ["Orchestrator"]


class Orchestrator:
    """Keeps every runner on time with three guarantees.

    - non-overlapping: a runner never runs twice at once (see :class:`PipeRunner`);
    - error isolation: a failing or slow runner delays no other (each run is its own task,
      sync pipes run in threads);
    - clean lifecycle: services open before anything runs; :meth:`request_stop` stops firing,
      lets running executions finish up to ``shutdown_timeout``, cancels the rest, then closes
      services. A second :meth:`request_stop` cancels at once.
    """

    def __init__(
        self,
        compiled: CompiledConfig,
        *,
        shutdown_timeout: float | None = None,
        cancel_timeout: float = 5.0,
        lateness_probe: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        wall_step: float = WALL_CLOCK_STEP,
    ) -> None:
        settings = compiled.loaded.config.orchestrator
        self.compiled = compiled
        self.shutdown_timeout = (
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        self.cancel_timeout = cancel_timeout
        self.lateness_probe = lateness_probe
        self.wall_clock = wall_clock
        """The wall clock of ``clock = "wall"`` triggers (injectable for tests)."""
        self.wall_step = wall_step
        self._rng = random.Random()
        self.state = StateStore(settings.state_path) if settings.state_path else None
        """The state file, locked from here until the run ends (see :meth:`close`)."""
        self.watchdog = LoopWatchdog(settings.watchdog) if settings.watchdog else None
        slots = (
            asyncio.Semaphore(settings.max_concurrent_runs)
            if settings.max_concurrent_runs is not None
            else None
        )
        self.runners: dict[str, PipeRunner] = {
            spec.id: PipeRunner(
                spec,
                services=compiled.services,
                env=compiled.env,
                slots=slots,
                on_finished=self._run_finished,
                stuck_grace=cancel_timeout,
                on_fire=self._noted_fire if self.state is not None else None,
            )
            for spec in compiled.runners
        }
        self._finished_subscribers: list[Callable[[str, PipeResult], None]] = []
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._listener: Any = None
        """The HTTP listener (core/orchestration/http_listener.py) when one runs."""
        self._listeners: dict[str, list[PipeRunner]] = {}
        for runner in self.runners.values():
            for trigger_id in runner.spec.triggers:
                self._listeners.setdefault(trigger_id, []).append(runner)
        self._timers: dict[str, Schedule] = {}
        """One per time trigger; with ``spread``, one per (trigger, runner)."""
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._firing = False
        self.started_at = 0.0
        self.stopped_by_request = False
        self.stubborn: list[str] = []
        """Runners whose runs ignored cancellation at shutdown."""

    # -- control --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop firing and drain. A second call: cancel running executions now."""
        if self._stop.is_set():
            self._force.set()
        self.stopped_by_request = True
        self._stop.set()

    async def run_once(self, runner_id: str) -> PipeResult:
        """Open services, run one runner's pipeline now, close services."""
        runner = self.runners.get(runner_id)
        if runner is None:
            known = ", ".join(self.runners) or "none"
            raise ComponentError(f"no runner {runner_id!r} (runners: {known})")
        try:
            async with self._services_open():
                task = runner.fire(TriggerRef("once"))
                assert task is not None
                await self._until_stopped_or_done([task])
                await self._shutdown()
        finally:
            self.close()
        if task.cancelled():
            return PipeResult.failure("cancelled at shutdown")
        return task.result()

    async def run(self) -> int:
        """Run until stopped (or, when every runner is one-time, until they finish).

        Returns the exit code: 0, or 1 when one-time runners alone ran and one failed."""
        try:
            if self.watchdog is not None:
                self.watchdog.start()
            return await self._run()
        finally:
            if self.watchdog is not None:
                self.watchdog.stop()
            self.close()

    def close(self) -> None:
        """Write and release the state file (done when a run ends; safe to call again)."""
        if self.state is not None:
            self.state.close()

    async def _run(self) -> int:
        async with self._services_open():
            # Everything built so far lives as long as the process: move it out of the
            # collector's sight, so a full collection never pauses the loop to scan it.
            freeze_long_lived()
            loop = asyncio.get_running_loop()
            self.started_at = loop.time()
            self._firing = True
            self._armer = Armer(
                self.started_at,
                self.wall_clock,
                self.wall_step,
                self._missed,
                self._rng,
                self.lateness_probe,
                self.state,
            )
            for trigger_id in self._listeners:
                self._arm(self.compiled.triggers[trigger_id])
            await self._start_listener()
            one_time = [r for r in self.runners.values() if r.spec.one_time]
            tasks = [task for r in one_time if (task := r.fire(None)) is not None]
            events.emit(
                logging.INFO,
                events.ORCHESTRATOR_READY,
                f"ready: runners={len(self.runners)} triggers={len(self._listeners)} "
                f"one_time={len(one_time)}",
                runners=len(self.runners),
                triggers=len(self._listeners),
            )
            if self._listeners:
                await self._stop.wait()
            else:
                await self._until_stopped_or_done(tasks)
            await self._shutdown()
        self._summary()
        if self._listeners or self.stopped_by_request:
            return 0
        ok = all(r.last_result is not None and r.last_result.succeeded for r in one_time)
        return 0 if ok else 1

    # -- triggers -------------------------------------------------------------------------

    def fire(self, trigger_id: str, payload: Any = None) -> list[FireOutcome]:
        """Fire every runner listing ``trigger_id`` now (event triggers call this)."""
        ref = TriggerRef(trigger_id, payload)
        return [self._fire_one(runner, ref) for runner in self._listeners.get(trigger_id, [])]

    def fire_runner(self, runner_id: str, payload: Any = None) -> FireOutcome:
        """Fire one runner now, as the trigger ``manual`` (``otai trigger RUNNER``)."""
        runner = self.runners.get(runner_id)
        if runner is None:
            return FireOutcome(runner_id, None, f"no runner {runner_id!r}")
        return self._fire_one(runner, TriggerRef("manual", payload))

    def _fire_one(self, runner: PipeRunner, ref: TriggerRef) -> FireOutcome:
        if not self._firing:
            return FireOutcome(runner.id, None, "the orchestrator is stopping")
        if runner.running and not runner.can_queue:
            return FireOutcome(
                runner.id,
                None,
                f"runner {runner.id!r} is busy: run {runner.run_id} has been running for "
                f"{runner.running_for:.1f}s",
            )
        if runner.fire(ref) is None:
            return FireOutcome(
                runner.id,
                None,
                f"queued: runner {runner.id!r} is busy with run {runner.run_id}; this fire "
                "runs when it ends",
            )
        return FireOutcome(runner.id, runner.run_id)

    def subscribe_run_finished(self, callback: Callable[[str, PipeResult], None]) -> None:
        """Call ``callback(runner_id, result)`` whenever a run ends (not when cancelled)."""
        self._finished_subscribers.append(callback)

    def _noted_fire(self, runner_id: str, trigger: TriggerRef | None) -> None:
        assert self.state is not None
        self.state.note_fire(runner_id, trigger or "start", self.wall_clock())

    def _run_finished(self, runner_id: str, result: PipeResult) -> None:
        if self.state is not None:
            trigger = self.runners[runner_id].current_trigger
            self.state.note_outcome(runner_id, trigger or "start", result.status, self.wall_clock())
        for callback in self._finished_subscribers:
            try:
                callback(runner_id, result)
            except Exception as exc:  # one subscriber's bug must not touch the runner
                events.emit(
                    logging.ERROR,
                    "trigger.failed",
                    "a run-finished subscriber failed: %s: %s",
                    type(exc).__name__,
                    exc,
                    exc=exc,
                    runner=runner_id,
                )

    def _arm(self, trigger: Trigger[Any]) -> None:
        if isinstance(trigger, EventTrigger):
            task = asyncio.get_running_loop().create_task(
                self._serve(trigger), name=f"otai-trigger:{trigger.id}"
            )
            self._serving[trigger.id] = task
            return
        if not isinstance(trigger, TimeTrigger):
            raise ComponentError(
                f"trigger {trigger.id!r} ({type(trigger).__name__}) is neither a TimeTrigger "
                "nor an EventTrigger"
            )
        for schedule in self._armer.arm(trigger, self._listeners[trigger.id]):
            self._timers[schedule.key] = schedule

    def _missed(self, schedule: Schedule, count: int, late: float) -> None:
        for runner in schedule.runners:
            runner.note_missed(schedule.trigger.id, count, late)

    async def _start_listener(self) -> None:
        settings = self.compiled.loaded.config.orchestrator
        wanted = settings.http is not None or any(
            isinstance(t, EventTrigger) and t.needs_http for t in self.compiled.triggers.values()
        )
        if wanted:
            from open_ticket_ai.core.orchestration.http_listener import start_listener

            self._listener = await start_listener(settings.http or HttpListenerConfig(), self)

    async def _serve(self, trigger: EventTrigger[Any]) -> None:
        try:
            await trigger.serve(
                CallbackHost(partial(self.fire, trigger.id), self.subscribe_run_finished)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            events.emit(
                logging.ERROR,
                "trigger.failed",
                "trigger %r stopped: %s: %s",
                trigger.id,
                type(exc).__name__,
                exc,
                exc=exc,
                trigger=trigger.id,
            )

    # -- lifecycle ------------------------------------------------------------------------

    def _services_open(self) -> ServicesOpen:
        return ServicesOpen(list(self.compiled.services.values()))

    async def _until_stopped_or_done(self, tasks: list[asyncio.Task[PipeResult]]) -> None:
        pending: set[asyncio.Future[Any]] = set(tasks)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while pending and not self._stop.is_set():
                _, pending = await asyncio.wait(pending | {stop}, return_when="FIRST_COMPLETED")
                pending.discard(stop)
        finally:
            stop.cancel()

    async def _shutdown(self) -> None:
        self._firing = False
        for schedule in self._timers.values():
            schedule.cancel()
        self._timers.clear()
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        for serving in self._serving.values():
            serving.cancel()
        if self._serving:
            await asyncio.wait(self._serving.values(), timeout=self.cancel_timeout)
            self._serving.clear()
        for runner in self.runners.values():
            runner.accepting = False
        running = {r.task: r for r in self.runners.values() if r.task is not None}
        if running and not self._force.is_set():
            events.emit(
                logging.INFO,
                events.ORCHESTRATOR_STOPPING,
                f"stopping: waiting up to {format_duration(self.shutdown_timeout)} for "
                f"{len(running)} running runs ({', '.join(r.id for r in running.values())})",
                running=len(running),
            )
            force = asyncio.ensure_future(self._force.wait())
            try:
                await self._drain(set(running), force)
            finally:
                force.cancel()
        left = {task: runner for task, runner in running.items() if not task.done()}
        for runner in self.runners.values():
            left.update((task, runner) for task in runner.abandoned)
        if left:
            events.emit(
                logging.WARNING,
                events.ORCHESTRATOR_STOPPING,
                f"cancelling {len(left)} runs still running: "
                f"{', '.join(r.id for r in left.values())}",
                cancelled=[r.id for r in left.values()],
            )
            for task in left:
                task.cancel()
            _, stuck = await asyncio.wait(left, timeout=self.cancel_timeout)
            self.stubborn = [left[task].id for task in stuck]
            if worker_threads.busy:
                events.emit(
                    logging.WARNING,
                    events.ORCHESTRATOR_STOPPING,
                    "%d sync pipes are still running in worker threads; they are abandoned",
                    worker_threads.busy,
                    abandoned_threads=worker_threads.busy,
                )
            if self.stubborn:
                events.emit(
                    logging.ERROR,
                    events.ORCHESTRATOR_STOPPING,
                    f"runs ignored cancellation for {format_duration(self.cancel_timeout)}: "
                    f"{', '.join(self.stubborn)}",
                    stubborn=self.stubborn,
                )

    async def _drain(
        self, tasks: set[asyncio.Task[PipeResult]], force: asyncio.Future[Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending and not force.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            _, pending = await asyncio.wait(
                pending | {force}, timeout=remaining, return_when="FIRST_COMPLETED"
            )
            pending.discard(force)

    def _summary(self) -> None:
        for runner in self.runners.values():
            runner.stats.emit_summary(runner.id)
        events.emit(logging.INFO, events.ORCHESTRATOR_STOPPED, "stopped")
