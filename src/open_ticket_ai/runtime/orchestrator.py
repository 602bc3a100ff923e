"""Orchestrator: opens services, arms triggers, runs runners, and stops in two phases."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.factory import CompiledConfig
from open_ticket_ai.core.memory import freeze_long_lived, tune_for_service
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import TriggerRef, worker_threads
from open_ticket_ai.core.triggers.base import (
    CallbackHost,
    EventTrigger,
    FireOutcome,
    FireStatus,
    TimeTrigger,
    Trigger,
)
from open_ticket_ai.errors import ComponentError
from open_ticket_ai.runtime.control import Listener, ListenerFactory
from open_ticket_ai.runtime.events import (
    ConfigNotice,
    ConfigWarning,
    DecisionCorrected,
    EventBus,
    LedgerFailed,
    LogSubscriber,
    OrchestratorCancelling,
    OrchestratorDraining,
    OrchestratorReady,
    OrchestratorStopped,
    RunEnded,
    RunFailed,
    RunFinished,
    RunnerPaused,
    RunnerResumed,
    RunOutcome,
    RunQueued,
    RunSkipped,
    RunsStubborn,
    RunStarted,
    ThreadsAbandoned,
    TriggerFailed,
    TriggerRefused,
)
from open_ticket_ai.runtime.health import RunnerHealth
from open_ticket_ai.runtime.ledger import (
    CONSOLE_RUNNER,
    RunRecord,
    SqliteLedgerStore,
    next_run_numbers,
    open_ledger,
)
from open_ticket_ai.runtime.review import Correction, CorrectionError, correct
from open_ticket_ai.runtime.runner import PipeRunner
from open_ticket_ai.runtime.scheduler import WALL_CLOCK_STEP, Schedule, Scheduler
from open_ticket_ai.runtime.service_lifecycle import ServicesOpen, StoppedWhileOpening
from open_ticket_ai.runtime.state import StateStore, state_file_of
from open_ticket_ai.runtime.stats import COUNTED
from open_ticket_ai.runtime.watchdog import LoopErrorReporter, LoopWatchdog
from open_ticket_ai.tickets.system import TicketSystem

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
        cancel_timeout: float | None = None,
        lateness_probe: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        wall_step: float = WALL_CLOCK_STEP,
        bus: EventBus | None = None,
        dry_run: bool = False,
        log: bool = True,
        listener: ListenerFactory | None = None,
    ) -> None:
        settings = compiled.loaded.config.orchestrator
        self.compiled = compiled
        self.bus = bus if bus is not None else EventBus()
        """Every event of this orchestrator and its runners is published here."""
        if log:
            self.bus.subscribe(LogSubscriber(), name="log")
        self.dry_run = dry_run
        self.shutdown_timeout = (
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        self.cancel_timeout = settings.cancel_timeout if cancel_timeout is None else cancel_timeout
        self.lateness_probe = lateness_probe
        self.wall_clock = wall_clock
        """The wall clock of ``clock = "wall"`` triggers (injectable for tests)."""
        self.wall_step = wall_step
        self._rng = random.Random()
        state_file = state_file_of(compiled)
        self.state = StateStore(state_file) if state_file is not None else None
        """The state file, locked from here until the run ends (see :meth:`close`)."""
        self.watchdog = LoopWatchdog(settings.watchdog, self.bus) if settings.watchdog else None
        self.ledger = open_ledger(compiled, self._ledger_failed)
        """The run ledger's writer (None with ``ledger: false``)."""
        numbers = next_run_numbers(self.ledger.store) if self.ledger is not None else {}
        self._console_runs = numbers.get(CONSOLE_RUNNER, 1) - 1
        """The number of the last correction recorded (runs ``console-N``)."""
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
                bus=self.bus,
                slots=slots,
                stuck_grace=self.cancel_timeout,
                dry_run=dry_run,
                wall_clock=wall_clock,
                first_run=numbers.get(spec.id, 1),
            )
            for spec in compiled.runners
        }
        if self.state is not None:
            for runner_id in self.state.paused() & self.runners.keys():
                self.runners[runner_id].paused = True
        if self.ledger is not None:
            self.bus.subscribe(self.ledger.submit, RunEnded, name="ledger")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bus.subscribe(self._count, *COUNTED, name="stats")
        if self.state is not None:
            self.bus.subscribe(
                self._note_state,
                RunStarted,
                RunSkipped,
                RunQueued,
                RunFinished,
                RunFailed,
                name="state",
            )
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._listener_factory = listener
        self._listener: Listener | None = None
        """The HTTP listener, when one runs (started through ``listener``)."""
        self._listeners: dict[str, list[PipeRunner]] = {}
        for runner in self.runners.values():
            for trigger_id in runner.spec.triggers:
                self._listeners.setdefault(trigger_id, []).append(runner)
        self.scheduler: Scheduler | None = None
        """Every timer, once :meth:`run` armed the triggers."""
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._firing = False
        self.started_at = 0.0
        self.stopped_by_request = False
        self.stubborn: list[str] = []
        """Runners whose runs ignored cancellation at shutdown."""

    # -- control --------------------------------------------------------------------------

    def halt(self) -> None:
        """No new run from now on; safe to call from a signal handler (it only sets flags).
        The signal's stop request itself follows on the loop (:meth:`request_stop`); this
        makes sure that timers the loop handles before it, after a blocked stretch, start
        nothing."""
        self._firing = False
        for runner in self.runners.values():
            runner.accepting = False

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
            self._start_ledger()
            async with self._services_open():
                task = runner.fire(TriggerRef("once"))
                assert task is not None
                await self._until_stopped_or_done([task])
                await self._shutdown()
        except StoppedWhileOpening:
            return PipeResult.failure("stopped before it ran: the stop came while services opened")
        finally:
            await self._close_ledger()
            self.close()
        if task.cancelled():
            return PipeResult.failure("cancelled at shutdown")
        if not task.done():
            return PipeResult.failure(
                f"ignored cancellation for {format_duration(self.cancel_timeout)}: abandoned"
            )
        return task.result()

    async def run(self) -> int:
        """Run until stopped (or, when every runner is one-time, until they finish).

        Returns the exit code: 0, or 1 when one-time runners alone ran and one failed."""
        loop = asyncio.get_running_loop()
        errors = LoopErrorReporter(self.bus)
        errors.install(loop)
        try:
            if self.watchdog is not None:
                self.watchdog.start()
            return await self._run()
        finally:
            errors.uninstall(loop)
            if self.watchdog is not None:
                self.watchdog.stop()
            await self._close_ledger()
            self.close()

    def close(self) -> None:
        """Write and release the state file, write what the ledger still holds (done when a
        run ends; safe to call again)."""
        if self.state is not None:
            self.state.close()
        if self.ledger is not None:
            self.ledger.close()

    async def _close_ledger(self) -> None:
        """Write what the ledger holds (off the loop: a failing disk may take the close's
        whole deadline), then deliver what its writer reported meanwhile."""
        if self.ledger is not None and self.ledger.pending:
            await asyncio.to_thread(self.ledger.close)
            await asyncio.sleep(0)

    def _ledger_failed(self, exc: BaseException) -> None:
        """From the ledger's writer thread: publish on the loop's thread."""
        assert self.ledger is not None
        event = LedgerFailed(
            path=str(getattr(self.ledger.store, "path", "?")),
            error=f"{type(exc).__name__}: {exc}",
            pending=self.ledger.pending,
        )
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.bus.publish, event)
                return
            except RuntimeError:
                pass  # the loop closed meanwhile
        self.bus.publish(event)

    async def _run(self) -> int:
        for notice in self.compiled.loaded.notices:
            self.bus.publish(ConfigNotice(notice=notice))
        for warning in self.compiled.warnings:
            self.bus.publish(ConfigWarning(warning=str(warning)))
        self._start_ledger()
        try:
            return await self._serve_all()
        except StoppedWhileOpening:
            self._summary()
            return 0

    async def _serve_all(self) -> int:
        async with self._services_open():
            loop = asyncio.get_running_loop()
            self.started_at = loop.time()
            self._firing = True
            self.scheduler = Scheduler(
                self.started_at,
                self.wall_clock,
                self.wall_step,
                self._missed,
                self._rng,
                self.lateness_probe,
                self.state,
                self.bus.publish,
            )
            for trigger_id in self._listeners:
                self._arm(self.compiled.triggers[trigger_id])
            # Everything built so far (the config, the services, every timer) lives as long
            # as the process: move it out of the collector's sight, so that a collection
            # never pauses the loop to scan it.
            freeze_long_lived()
            tune_for_service()
            await self._start_listener()
            one_time = [r for r in self.runners.values() if r.spec.one_time]
            tasks = [task for r in one_time if (task := r.fire(None)) is not None]
            self.bus.publish(
                OrchestratorReady(
                    runners=len(self.runners), triggers=len(self._listeners), one_time=len(one_time)
                )
            )
            if self._listeners:
                await self._stop.wait()
            else:
                await self._until_stopped_or_done(tasks)
            await self._shutdown()
        self._summary()
        if self._listeners or self.stopped_by_request:
            return 0
        ok = all(r.last_outcome is RunOutcome.SUCCEEDED for r in one_time)
        return 0 if ok else 1

    # -- triggers -------------------------------------------------------------------------

    def fire(self, trigger_id: str, payload: Any = None) -> list[FireOutcome]:
        """Fire every runner listing ``trigger_id`` now (event triggers call this)."""
        ref = TriggerRef(trigger_id, payload)
        outcomes = [self._fire_one(runner, ref) for runner in self._listeners.get(trigger_id, [])]
        self._report_refusals(trigger_id, outcomes)
        return outcomes

    def fire_runner(self, runner_id: str, payload: Any = None) -> FireOutcome:
        """Fire one runner now, as the trigger ``manual`` (``otai trigger RUNNER``)."""
        runner = self.runners.get(runner_id)
        if runner is None:
            return FireOutcome(
                runner_id, FireStatus.NO_SUCH_RUNNER, reason=f"no runner {runner_id!r}"
            )
        outcome = self._fire_one(runner, TriggerRef("manual", payload))
        self._report_refusals("manual", [outcome])
        return outcome

    def _fire_one(self, runner: PipeRunner, ref: TriggerRef) -> FireOutcome:
        if not self._firing:
            return FireOutcome(
                runner.id, FireStatus.STOPPING, reason="the orchestrator is stopping"
            )
        if runner.paused:
            runner.fire(ref)  # published as run.skipped (reason: paused)
            return FireOutcome(
                runner.id, FireStatus.PAUSED, reason=f"runner {runner.id!r} is paused"
            )
        if runner.running and not runner.can_queue:
            return FireOutcome(
                runner.id,
                FireStatus.BUSY,
                reason=f"runner {runner.id!r} is busy: run {runner.run_id} has been running for "
                f"{runner.running_for:.1f}s",
            )
        if runner.fire(ref) is None:
            return FireOutcome(
                runner.id,
                FireStatus.QUEUED,
                reason=f"queued: runner {runner.id!r} is busy with run {runner.run_id}; this "
                "fire runs when it ends",
            )
        return FireOutcome(runner.id, FireStatus.STARTED, runner.run_id)

    def _report_refusals(self, source: str, outcomes: list[FireOutcome]) -> None:
        for outcome in outcomes:
            if outcome.refused:
                self.bus.publish(TriggerRefused.of(source, outcome))

    # -- the control interface (open_ticket_ai.runtime.control.Control) ---------------------

    @property
    def env(self) -> Mapping[str, str]:
        return self.compiled.env

    @property
    def runner_ids(self) -> Collection[str]:
        return self.runners.keys()

    def trigger(self, trigger_id: str) -> Trigger[Any] | None:
        return self.compiled.triggers.get(trigger_id)

    def health(self) -> dict[str, RunnerHealth]:
        now = time.time()
        return {id: runner.health(now) for id, runner in self.runners.items()}

    def triggers_of(self, runner_id: str) -> list[str]:
        runner = self.runners.get(runner_id)
        return list(runner.spec.triggers) if runner is not None else []

    def ticket_url(self, system_id: str, ticket_id: str) -> str | None:
        system = self.compiled.services.get(system_id)
        return system.ticket_url(ticket_id) if isinstance(system, TicketSystem) else None

    def ledger_path(self) -> Path | None:
        """The ledger file (None with ``ledger: false``), for readers such as the console,
        which open it read-only."""
        path = getattr(self.ledger.store, "path", None) if self.ledger is not None else None
        return Path(path) if path is not None else None

    async def correct_decision(
        self, run_id: str, position: int, label: str, *, user: str
    ) -> Correction:
        """Set the ticket of a recorded decision to ``label`` in its helpdesk and record the
        correction in the ledger (see :mod:`open_ticket_ai.runtime.review`)."""
        path = self.ledger_path()
        if self.ledger is None or path is None:
            raise CorrectionError("the run ledger is off (ledger: false): nothing to correct")
        record = await asyncio.to_thread(_read_run, path, run_id)
        self._console_runs += 1
        done = await correct(
            record,
            self.compiled.services,
            run_id=run_id,
            position=position,
            label=label,
            user=user,
            run_number=self._console_runs,
        )
        self.ledger.submit(done.record)
        # Written before the person's next page is read: the review queue must not offer
        # the decision again (a correction is rare; the runs' records stay batched).
        await asyncio.to_thread(self.ledger.flush)
        self.bus.publish(
            DecisionCorrected(
                ticket_id=done.ticket_id,
                model=done.decision.model,
                label=label.strip(),
                previous=str(done.decision.used),
                by=user,
            )
        )
        return done

    def pause(self, runner_id: str, *, by: str = "") -> bool:
        """Pause a runner: its fires are skipped until :meth:`resume` (kept in the state
        file, so across restarts, when there is one). False for an unknown runner."""
        return self._set_paused(runner_id, True, by)

    def resume(self, runner_id: str, *, by: str = "") -> bool:
        """Resume a paused runner; False for an unknown runner."""
        return self._set_paused(runner_id, False, by)

    def _set_paused(self, runner_id: str, paused: bool, by: str) -> bool:
        runner = self.runners.get(runner_id)
        if runner is None:
            return False
        if runner.paused != paused:
            runner.paused = paused
            if self.state is not None:
                self.state.set_paused(runner_id, paused, by=by, at=self.wall_clock())
            event = RunnerPaused if paused else RunnerResumed
            self.bus.publish(event(runner=runner_id, by=by))
        return True

    def readiness(self) -> str | None:
        """None while runs are fired (services open, triggers armed); else ``starting`` or
        ``stopping``."""
        if self._firing:
            return None
        return "stopping" if self.stopped_by_request or self.scheduler is not None else "starting"

    def next_fires(self) -> dict[str, float]:
        """Per runner with a time trigger, the POSIX time of its next fire."""
        if self._loop is None or self.scheduler is None:
            return {}
        return self.scheduler.next_fires(self._loop.time(), self.wall_clock())

    def subscribe_run_finished(self, callback: Callable[[RunEnded], None]) -> None:
        """Call ``callback(event)`` whenever a run finishes or fails (not when cancelled)."""
        self.bus.subscribe(callback, RunFinished, RunFailed)

    def _count(self, event: Any) -> None:
        runner = self.runners.get(event.runner)
        if runner is not None:
            runner.stats.observe(event)

    def _note_state(self, event: Any) -> None:
        assert self.state is not None
        trigger = event.trigger or "start"
        if isinstance(event, RunEnded):
            status = event.result.status if event.result is not None else event.outcome.value
            self.state.note_outcome(event.runner, trigger, status, self.wall_clock())
        else:
            self.state.note_fire(event.runner, trigger, self.wall_clock())

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
        assert self.scheduler is not None
        self.scheduler.arm(trigger, self._listeners[trigger.id])

    def _missed(self, schedule: Schedule, count: int, late: float) -> None:
        for runner in schedule.runners:
            runner.note_missed(schedule.trigger.id, count, late)

    async def _start_listener(self) -> None:
        settings = self.compiled.loaded.config.orchestrator
        wanted = settings.http is not None or any(
            isinstance(t, EventTrigger) and t.needs_http for t in self.compiled.triggers.values()
        )
        if wanted:
            if self._listener_factory is None:
                raise ComponentError(
                    "this config needs the HTTP listener (orchestrator.http or a webhook "
                    "trigger), but the orchestrator was built without one: run it with "
                    "`otai run`, or pass listener=open_ticket_ai.http.start_listener"
                )
            self._listener = await self._listener_factory(
                settings.http or HttpListenerConfig(), self
            )

    async def _serve(self, trigger: EventTrigger[Any]) -> None:
        try:
            await trigger.serve(
                CallbackHost(partial(self.fire, trigger.id), self.subscribe_run_finished)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.bus.publish(TriggerFailed(trigger=trigger.id, error=exc))

    # -- lifecycle ------------------------------------------------------------------------

    def _start_ledger(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.ledger is not None:
            self.ledger.start()

    def _services_open(self) -> ServicesOpen:
        return ServicesOpen(
            list(self.compiled.services.values()),
            self.bus,
            stop=self._stop,
            close_timeout=max(self.cancel_timeout, 1.0),
        )

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
        if self.scheduler is not None:
            self.scheduler.cancel()
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
            self.bus.publish(
                OrchestratorDraining(
                    runners=tuple(r.id for r in running.values()), timeout=self.shutdown_timeout
                )
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
            self.bus.publish(OrchestratorCancelling(runners=tuple(r.id for r in left.values())))
            for task in left:
                task.cancel()
            _, stuck = await asyncio.wait(left, timeout=self.cancel_timeout)
            self.stubborn = [left[task].id for task in stuck]
            if worker_threads.busy:
                self.bus.publish(ThreadsAbandoned(count=worker_threads.busy))
            if self.stubborn:
                self.bus.publish(
                    RunsStubborn(runners=tuple(self.stubborn), grace=self.cancel_timeout)
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
            self.bus.publish(runner.stats.summary(runner.id))
        self.bus.publish(OrchestratorStopped())


def _read_run(path: Path, run_id: str) -> RunRecord | None:
    store = SqliteLedgerStore(path, readonly=True)
    try:
        return store.run(run_id)
    finally:
        store.close()
