"""Orchestrator: opens services, arms triggers, runs runners, and stops in two phases."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.factory import CompiledConfig
from open_ticket_ai.core.memory import freeze_long_lived
from open_ticket_ai.core.orchestration import events
from open_ticket_ai.core.orchestration.scheduled_runner import PipeRunner
from open_ticket_ai.core.orchestration.service_lifecycle import ServicesOpen
from open_ticket_ai.core.orchestration.trigger import (
    CallbackHost,
    EventTrigger,
    FireOutcome,
    TimeTrigger,
    Trigger,
)
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import TriggerRef, worker_threads
from open_ticket_ai.errors import ComponentError

__all__ = ["Orchestrator"]

WALL_CLOCK_STEP = 60.0
"""Wall-clock triggers sleep at most this long before re-checking the clock."""


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
    ) -> None:
        settings = compiled.loaded.config.orchestrator
        self.compiled = compiled
        self.shutdown_timeout = (
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        self.cancel_timeout = cancel_timeout
        self.lateness_probe = lateness_probe
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
            )
            for spec in compiled.runners
        }
        self._finished_subscribers: list[Callable[[str, PipeResult], None]] = []
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, list[PipeRunner]] = {}
        for runner in self.runners.values():
            for trigger_id in runner.spec.triggers:
                self._listeners.setdefault(trigger_id, []).append(runner)
        self._timers: dict[str, asyncio.TimerHandle] = {}
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
        async with self._services_open():
            task = runner.fire(TriggerRef("once"))
            assert task is not None
            await self._until_stopped_or_done([task])
            await self._shutdown()
        if task.cancelled():
            return PipeResult.failure("cancelled at shutdown")
        return task.result()

    async def run(self) -> int:
        """Run until stopped (or, when every runner is one-time, until they finish).

        Returns the exit code: 0, or 1 when one-time runners alone ran and one failed."""
        async with self._services_open():
            # Everything built so far lives as long as the process: move it out of the
            # collector's sight, so a full collection never pauses the loop to scan it.
            freeze_long_lived()
            loop = asyncio.get_running_loop()
            self.started_at = loop.time()
            self._firing = True
            for trigger_id in self._listeners:
                self._arm(self.compiled.triggers[trigger_id])
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
        if runner.running:
            return FireOutcome(
                runner.id,
                None,
                f"runner {runner.id!r} is busy: run {runner.run_id} has been running for "
                f"{runner.running_for:.1f}s",
            )
        runner.fire(ref)
        return FireOutcome(runner.id, runner.run_id)

    def subscribe_run_finished(self, callback: Callable[[str, PipeResult], None]) -> None:
        """Call ``callback(runner_id, result)`` whenever a run ends (not when cancelled)."""
        self._finished_subscribers.append(callback)

    def _run_finished(self, runner_id: str, result: PipeResult) -> None:
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
        ref = TriggerRef(trigger.id)
        if trigger.clock == "wall":
            start = time.time()
            first = trigger.first_fire(start)
            if first is not None:
                self._wall_at(trigger, ref, first, start)
        else:
            start = self.started_at
            first = trigger.first_fire(start)
            if first is not None:
                self._timers[trigger.id] = asyncio.get_running_loop().call_at(
                    first, self._on_monotonic, trigger, ref, first, start
                )

    def _fire(self, trigger_id: str, ref: TriggerRef, lateness: float) -> None:
        if self.lateness_probe is not None:
            self.lateness_probe(lateness)
        for runner in self._listeners[trigger_id]:
            runner.fire(ref)

    def _on_monotonic(
        self, trigger: TimeTrigger[Any], ref: TriggerRef, due: float, start: float
    ) -> None:
        if not self._firing:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._fire(trigger.id, ref, now - due)
        # The next fire lies on the grid after now: a late fire never shifts the schedule.
        following = trigger.next_fire_after(max(due, now), start)
        if following is not None:
            self._timers[trigger.id] = loop.call_at(
                following, self._on_monotonic, trigger, ref, following, start
            )
        else:
            self._timers.pop(trigger.id, None)

    def _wall_at(
        self, trigger: TimeTrigger[Any], ref: TriggerRef, due: float, start: float
    ) -> None:
        # Sleep in capped steps and re-check the wall clock, so a clock step or a suspend
        # fires what is due promptly, once.
        delay = min(max(due - time.time(), 0.0), WALL_CLOCK_STEP)
        self._timers[trigger.id] = asyncio.get_running_loop().call_later(
            delay, self._on_wall, trigger, ref, due, start
        )

    def _on_wall(
        self, trigger: TimeTrigger[Any], ref: TriggerRef, due: float, start: float
    ) -> None:
        if not self._firing:
            return
        now = time.time()
        if now < due:
            self._wall_at(trigger, ref, due, start)
            return
        self._fire(trigger.id, ref, now - due)
        following = trigger.next_fire_after(max(due, now), start)
        if following is not None:
            self._wall_at(trigger, ref, following, start)
        else:
            self._timers.pop(trigger.id, None)

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
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
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
            s = runner.stats
            events.emit(
                logging.INFO,
                events.RUNNER_SUMMARY,
                f"runner {runner.id!r}: {s.runs} runs, {s.failures} failed, {s.skips} skipped, "
                f"{s.cancelled} cancelled, mean {s.mean_seconds * 1000:.1f}ms, "
                f"max {s.max_seconds * 1000:.1f}ms",
                runner=runner.id,
                runs=s.runs,
                failures=s.failures,
                skips=s.skips,
                cancelled=s.cancelled,
                mean_ms=round(s.mean_seconds * 1000, 3),
                max_ms=round(s.max_seconds * 1000, 3),
            )
        events.emit(logging.INFO, events.ORCHESTRATOR_STOPPED, "stopped")
