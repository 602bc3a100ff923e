"""Run events: every event the runtime emits, as frozen records with typed fields, each with
its stable name, and the :class:`EventBus` that delivers them to subscribers.

Logging is one subscriber among several (:class:`LogSubscriber`: text or JSON lines with the
event's name and fields); runner counters, the state file, the ledger and
``RunnerFinishedTrigger`` are others. No event name exists as a string anywhere else.

Times: ``started``/``scheduled``/``ended`` are POSIX seconds (wall clock, for people and
files); durations are seconds. Log fields keep their names: ``duration_ms`` and the like.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, dataclass_transform

from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.pipes.records import Action, Decision, StepReport
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.triggers.base import FireOutcome, FireStatus
from open_ticket_ai.errors import OpenTicketAIError

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "CLOCK_STEPPED",
    "CONFIG_NOTICE",
    "CONFIG_WARNING",
    "CONSOLE_LOGIN",
    "CONSOLE_LOGIN_FAILED",
    "DECISION_CORRECTED",
    "HELPDESK_REQUEST",
    "HELPDESK_RETRY",
    "HTTP_REQUEST",
    "LOOP_BLOCKED",
    "LOOP_ERROR",
    "ORCHESTRATOR_LISTENING",
    "ORCHESTRATOR_READY",
    "ORCHESTRATOR_STOPPED",
    "ORCHESTRATOR_STOPPING",
    "RUNNER_PAUSED",
    "RUNNER_RESUMED",
    "RUNNER_SUMMARY",
    "RUN_CANCELLED",
    "RUN_CATCH_UP",
    "RUN_FAILED",
    "RUN_FINISHED",
    "RUN_MISSED",
    "RUN_QUEUED",
    "RUN_SKIPPED",
    "RUN_STARTED",
    "RUN_STUCK",
    "RUN_TIMEOUT",
    "SCHEDULE_RESET",
    "SERVICE_ABANDONED",
    "SERVICE_CLOSE_FAILED",
    "STEP_RETRY",
    "SUBSCRIBER_FAILED",
    "TRIGGER_FAILED",
    "TRIGGER_REFUSED",
    "WEBHOOK_REPLAYED",
    "WEBHOOK_UNAUTHORIZED",
    "ClockStepped",
    "ConfigNotice",
    "ConfigWarning",
    "ConsoleLogin",
    "ConsoleLoginFailed",
    "DecisionCorrected",
    "Event",
    "EventBus",
    "HelpdeskRequest",
    "HelpdeskRetry",
    "HttpRequestFailed",
    "HttpRequestServed",
    "LedgerFailed",
    "ListenerStarted",
    "LogSubscriber",
    "LoopBlocked",
    "LoopError",
    "OrchestratorCancelling",
    "OrchestratorDraining",
    "OrchestratorReady",
    "OrchestratorStopped",
    "RunCancelled",
    "RunCatchUp",
    "RunEnded",
    "RunFailed",
    "RunFinished",
    "RunMissed",
    "RunOutcome",
    "RunQueued",
    "RunSkipped",
    "RunStarted",
    "RunStuck",
    "RunTimeout",
    "RunnerPaused",
    "RunnerResumed",
    "RunnerSummary",
    "RunsStubborn",
    "ScheduleReset",
    "ServiceAbandoned",
    "ServiceCloseFailed",
    "SkipReason",
    "StepReport",
    "StepRetry",
    "ThreadsAbandoned",
    "TriggerFailed",
    "TriggerRefused",
    "WebhookReplayed",
    "WebhookUnauthorized",
    "logger",
    "payload_size",
    "summarise",
]

logger = logging.getLogger("open_ticket_ai")
_E = TypeVar("_E")

RUN_STARTED = "run.started"
RUN_FINISHED = "run.finished"
RUN_FAILED = "run.failed"
RUN_SKIPPED = "run.skipped"
RUN_CANCELLED = "run.cancelled"
RUN_QUEUED = "run.queued"
RUN_MISSED = "run.missed"
RUN_CATCH_UP = "run.catch_up"
RUN_TIMEOUT = "run.timeout"
RUN_STUCK = "run.stuck"
TRIGGER_REFUSED = "trigger.refused"
TRIGGER_FAILED = "trigger.failed"
LOOP_BLOCKED = "loop.blocked"
LOOP_ERROR = "loop.error"
SERVICE_CLOSE_FAILED = "service.close_failed"
ORCHESTRATOR_READY = "orchestrator.ready"
ORCHESTRATOR_LISTENING = "orchestrator.listening"
ORCHESTRATOR_STOPPING = "orchestrator.stopping"
ORCHESTRATOR_STOPPED = "orchestrator.stopped"
RUNNER_SUMMARY = "runner.summary"
WEBHOOK_UNAUTHORIZED = "webhook.unauthorized"
WEBHOOK_REPLAYED = "webhook.replayed"
CONSOLE_LOGIN = "console.login"
CONSOLE_LOGIN_FAILED = "console.login_failed"
RUNNER_PAUSED = "runner.paused"
RUNNER_RESUMED = "runner.resumed"
DECISION_CORRECTED = "decision.corrected"
HELPDESK_REQUEST = "helpdesk.request"
HELPDESK_RETRY = "helpdesk.retry"
STEP_RETRY = "step.retry"
SCHEDULE_RESET = "schedule.reset"
CLOCK_STEPPED = "clock.stepped"
CONFIG_WARNING = "config.warning"
CONFIG_NOTICE = "config.notice"
SERVICE_ABANDONED = "service.abandoned"
HTTP_REQUEST = "http.request"
LEDGER_FAILED = "ledger.failed"
SUBSCRIBER_FAILED = "bus.subscriber_failed"


class RunOutcome(StrEnum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    STUCK = "stuck"


class SkipReason(StrEnum):
    """Why a fire did not start a run."""

    RUNNING = "running"
    """The previous run still runs."""
    QUEUE_FULL = "queue_full"
    """``overlap: queue_one`` and a fire already waits."""
    STOPPING = "stopping"
    PAUSED = "paused"
    """The runner is paused (from the console); it runs again once resumed."""


_FACTORY: Any = object()


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def record(cls: type[_E]) -> type[_E]:
    """``@dataclass(frozen=True, slots=True, kw_only=True)``, with a faster ``__init__``.

    A frozen dataclass sets each field through ``object.__setattr__``; an event is made for
    every run, so the ``__init__`` made here sets each slot through its descriptor instead,
    at half the cost. The class stays a frozen dataclass: the same fields, defaults and
    refusal to change."""
    made = dataclass(frozen=True, slots=True, kw_only=True)(cls)
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    for item in fields(made):  # type: ignore[arg-type]
        names[f"_set_{item.name}"] = getattr(made, item.name).__set__
        if item.default is not MISSING:
            names[f"_default_{item.name}"] = item.default
            params.append(f"{item.name}=_default_{item.name}")
        elif item.default_factory is not MISSING:
            names[f"_factory_{item.name}"] = item.default_factory
            params.append(f"{item.name}=_FACTORY")
            body.append(f"    if {item.name} is _FACTORY: {item.name} = _factory_{item.name}()\n")
        else:
            params.append(item.name)
        body.append(f"    _set_{item.name}(self, {item.name})\n")
    source = f"def __init__(self, *, {', '.join(params)}):\n" + ("".join(body) or "    pass\n")
    if not params:
        source = "def __init__(self):\n    pass\n"
    exec(source, names)
    init = names["__init__"]
    init.__qualname__ = f"{made.__qualname__}.__init__"
    made.__init__ = init  # type: ignore[method-assign]
    return made


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@record
class Event:
    """An event: a frozen record with a stable ``name`` and a log ``level``.

    ``message()`` is the human line and ``fields()`` the structured fields of its log record;
    both are computed only when a subscriber asks."""

    name: ClassVar[str]
    level: ClassVar[int] = logging.INFO

    def message(self) -> str:
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        return {}

    @property
    def exc(self) -> BaseException | None:
        """The exception whose traceback the log line carries, if any."""
        return None


# -- runs ------------------------------------------------------------------------------------


@record
class RunStarted(Event):
    name: ClassVar[str] = RUN_STARTED
    runner: str
    trigger: str | None
    run_id: str
    started: float
    scheduled: float | None = None
    payload_size: int | None = None
    dry_run: bool = False

    def message(self) -> str:
        return f"runner {self.runner!r} started (trigger {self.trigger or 'start'})"

    def fields(self) -> dict[str, Any]:
        return {"runner": self.runner, "trigger": self.trigger, "run_id": self.run_id}


@record
class RunEnded(Event):
    """A run ended: the base of :class:`RunFinished`, :class:`RunFailed`,
    :class:`RunCancelled` and :class:`RunStuck`. ``result`` is None for cancelled and stuck
    runs."""

    runner: str
    trigger: str | None
    run_id: str
    outcome: RunOutcome
    started: float
    duration: float
    scheduled: float | None = None
    payload_size: int | None = None
    result: PipeResult | None = field(default=None, compare=False, repr=False)
    results: Mapping[str, PipeResult] = field(default_factory=dict, compare=False, repr=False)
    """Every step's result by step id (what ``otai run --once`` prints)."""
    error: str | None = None
    steps: Sequence[StepReport] = ()
    actions: Sequence[Action] = ()
    decisions: Sequence[Decision] = ()
    dry_run: bool = False

    @property
    def ended(self) -> float:
        return self.started + self.duration

    def summary(self) -> str:
        """What the run did to the outside world, in a few words ('' when nothing)."""
        return summarise(self.actions, self.decisions)

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "runner": self.runner,
            "trigger": self.trigger,
            "run_id": self.run_id,
            "duration_ms": _ms(self.duration),
            "status": self.outcome.value,
        }
        if self.error is not None:
            body["error"] = self.error
        if self.actions or self.decisions:
            body["actions"] = len(self.actions)
            body["decisions"] = len(self.decisions)
        if self.dry_run:
            body["dry_run"] = True
        return body


@record
class RunFinished(RunEnded):
    """A run ended without failing (its pipeline succeeded or was skipped)."""

    name: ClassVar[str] = RUN_FINISHED

    def message(self) -> str:
        line = f"runner {self.runner!r} {self.outcome.value} in {_ms(self.duration)}ms"
        if self.dry_run:
            line += " (dry run)"
        done = self.summary()
        return f"{line}: {done}" if done else line


@record
class RunFailed(RunEnded):
    """A run failed (``outcome`` FAILED) or timed out (TIMED_OUT: already reported by
    :class:`RunTimeout`, so logged at DEBUG)."""

    name: ClassVar[str] = RUN_FAILED
    level: ClassVar[int] = logging.ERROR
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def exc(self) -> BaseException | None:
        return self.exception

    def message(self) -> str:
        line = f"runner {self.runner!r} failed after {_ms(self.duration)}ms: {self.error}"
        done = self.summary()
        return f"{line} ({done})" if done else line


@record
class RunCancelled(RunEnded):
    name: ClassVar[str] = RUN_CANCELLED
    level: ClassVar[int] = logging.WARNING

    def message(self) -> str:
        return f"runner {self.runner!r} cancelled after {self.duration:.3f}s"


@record
class RunStuck(RunEnded):
    """A run ignored its timeout's cancellation for ``grace`` seconds and was abandoned."""

    name: ClassVar[str] = RUN_STUCK
    level: ClassVar[int] = logging.ERROR
    grace: float = 0.0

    def message(self) -> str:
        return (
            f"runner {self.runner!r}: run {self.run_id} ignored cancellation for "
            f"{format_duration(self.grace)} after its timeout; it is abandoned and the runner is "
            "free again"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "trigger": self.trigger,
            "run_id": self.run_id,
            "running_ms": _ms(self.duration),
        }


@record
class RunTimeout(Event):
    """A run passed its ``timeout`` and is being cancelled."""

    name: ClassVar[str] = RUN_TIMEOUT
    level: ClassVar[int] = logging.ERROR
    runner: str
    trigger: str | None
    run_id: str
    timeout: float

    def message(self) -> str:
        limit = format_duration(self.timeout)
        return f"runner {self.runner!r} timed out after {limit}; cancelling the run"

    def fields(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "trigger": self.trigger,
            "run_id": self.run_id,
            "timeout_ms": _ms(self.timeout),
        }


@record
class RunQueued(Event):
    """A fire found its runner running and waits for it (``overlap: queue_one``)."""

    name: ClassVar[str] = RUN_QUEUED
    runner: str
    trigger: str | None
    current_run: str | None

    def message(self) -> str:
        return (
            f"runner {self.runner!r}: fire of {self.trigger or 'start'} queued, runs when the "
            f"current run ({self.current_run}) ends"
        )

    def fields(self) -> dict[str, Any]:
        return {"runner": self.runner, "trigger": self.trigger}


@record
class RunSkipped(Event):
    """A fire that did not run: the runner was busy, or the orchestrator is stopping."""

    name: ClassVar[str] = RUN_SKIPPED
    runner: str
    trigger: str | None
    reason: SkipReason
    running_for: float | None = None
    current_trigger: str | None = None
    queued: bool = False
    """True for a fire that had been queued and was dropped."""

    def message(self) -> str:
        fire = f"{'queued ' if self.queued else ''}fire of {self.trigger or 'start'}"
        if self.reason is SkipReason.STOPPING:
            return f"runner {self.runner!r}: {fire} dropped, the orchestrator is stopping"
        if self.reason is SkipReason.PAUSED:
            return f"runner {self.runner!r}: {fire} skipped, the runner is paused"
        return (
            f"runner {self.runner!r}: {fire} skipped, the previous run "
            f"({self.current_trigger or 'start'}) has been running for "
            f"{self.running_for or 0.0:.3f}s"
        )

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {"runner": self.runner, "trigger": self.trigger}
        if self.running_for is not None:
            body["running_ms"] = _ms(self.running_for)
        body["reason"] = self.reason.value
        return body


@record
class RunMissed(Event):
    """Fires of a time trigger that passed without a run (late, or while stopped)."""

    name: ClassVar[str] = RUN_MISSED
    level: ClassVar[int] = logging.WARNING
    runner: str
    trigger: str
    count: int
    late: float
    reason: str = "late"

    def message(self) -> str:
        return (
            f"runner {self.runner!r}: {self.count} fire(s) of {self.trigger} missed "
            f"({self.reason}, {self.late:.3f}s late)"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "trigger": self.trigger,
            "count": self.count,
            "late_ms": _ms(self.late),
            "reason": self.reason,
        }


@record
class RunCatchUp(Event):
    """A fire missed while the service was stopped runs now, once."""

    name: ClassVar[str] = RUN_CATCH_UP
    runner: str
    trigger: str
    late: float
    missed: int

    def message(self) -> str:
        return (
            f"runner {self.runner!r}: catching up the fire of {self.trigger} missed while "
            f"stopped ({self.late:.3f}s ago)"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "trigger": self.trigger,
            "late_ms": _ms(self.late),
            "missed": self.missed,
        }


# -- triggers --------------------------------------------------------------------------------


@record
class TriggerRefused(Event):
    """A fire from outside (webhook, manual, another runner) that a runner refused."""

    name: ClassVar[str] = TRIGGER_REFUSED
    source: str
    runner: str
    outcome: FireStatus
    reason: str | None

    def message(self) -> str:
        return f"{self.source}: runner {self.runner!r} not fired: {self.reason}"

    def fields(self) -> dict[str, Any]:
        return {
            "trigger": self.source,
            "runner": self.runner,
            "reason": self.reason,
            "outcome": self.outcome.value,
        }

    @classmethod
    def of(cls, source: str, outcome: FireOutcome) -> TriggerRefused:
        return cls(
            source=source, runner=outcome.runner, outcome=outcome.status, reason=outcome.reason
        )


@record
class TriggerFailed(Event):
    """An event trigger's task stopped with an error (a subscriber that raises is reported
    by the bus itself, as ``bus.subscriber_failed``)."""

    name: ClassVar[str] = TRIGGER_FAILED
    level: ClassVar[int] = logging.ERROR
    trigger: str
    error: BaseException = field(compare=False)

    @property
    def exc(self) -> BaseException | None:
        return self.error

    def message(self) -> str:
        return f"trigger {self.trigger!r} stopped: {type(self.error).__name__}: {self.error}"

    def fields(self) -> dict[str, Any]:
        return {"trigger": self.trigger}


@record
class _WebhookRefused(Event):
    level: ClassVar[int] = logging.WARNING
    trigger: str
    client: str
    reason: str

    def message(self) -> str:
        return f"webhook {self.trigger!r}: request from {self.client or '?'} refused: {self.reason}"

    def fields(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "client": self.client}


@record
class WebhookUnauthorized(_WebhookRefused):
    name: ClassVar[str] = WEBHOOK_UNAUTHORIZED


@record
class WebhookReplayed(_WebhookRefused):
    """A signed webhook request whose signature was accepted before, within the tolerance:
    refused with 409 (a stale timestamp is a 401, ``webhook.unauthorized``)."""

    name: ClassVar[str] = WEBHOOK_REPLAYED


@record
class ConfigWarning(Event):
    """Something in the config that may fail at run time (what ``otai validate`` warns of),
    logged once when the service starts."""

    name: ClassVar[str] = CONFIG_WARNING
    level: ClassVar[int] = logging.WARNING
    warning: str

    def message(self) -> str:
        return self.warning

    def fields(self) -> dict[str, Any]:
        return {"warning": self.warning}


@record
class ConfigNotice(Event):
    """How the config was read when not in this project's own format (Open Ticket AI's),
    and what of it has no meaning here: logged once when the service starts."""

    name: ClassVar[str] = CONFIG_NOTICE
    level: ClassVar[int] = logging.INFO
    notice: str

    def message(self) -> str:
        return self.notice

    def fields(self) -> dict[str, Any]:
        return {"notice": self.notice}


@record
class ClockStepped(Event):
    """The wall clock moved more than a minute more (or less) than the time that passed: an
    NTP correction, someone setting the clock, a resume from suspend. Wall-clock triggers
    (cron) then act as Debian's cron does; see docs/scheduling.md."""

    name: ClassVar[str] = CLOCK_STEPPED
    level: ClassVar[int] = logging.WARNING
    step: float
    """Seconds: positive forward, negative back."""

    def message(self) -> str:
        size = format_duration(abs(self.step))
        if self.step > 0:
            return f"the wall clock jumped forward by {size}: cron fires it skipped run once"
        return f"the wall clock was set back by {size}: cron fires that already ran do not repeat"

    def fields(self) -> dict[str, Any]:
        return {"step_s": round(self.step, 3)}


@record
class ScheduleReset(Event):
    """A grid restored from the state file started in the future (the wall clock is behind
    the one that wrote it): it is replaced by a grid starting now, instead of a silence until
    the clock catches up."""

    name: ClassVar[str] = SCHEDULE_RESET
    level: ClassVar[int] = logging.WARNING
    trigger: str
    ahead: float
    """Seconds the stored start lay ahead of now."""

    def message(self) -> str:
        return (
            f"trigger {self.trigger!r}: its stored grid starts {format_duration(self.ahead)} "
            "in the future (the clock is behind the one that wrote the state file); a new "
            "grid starts now"
        )

    def fields(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "ahead_s": round(self.ahead, 3)}


@record
class HelpdeskRequest(Event):
    """One HTTP request a ticket system adapter sent to its helpdesk (each attempt of a
    retried call): ``status`` 0 when no answer came (timeout, connection error)."""

    name: ClassVar[str] = HELPDESK_REQUEST
    level: ClassVar[int] = logging.DEBUG
    system: str
    method: str
    status: int
    duration: float

    def message(self) -> str:
        answer = str(self.status) if self.status else "no answer"
        return f"{self.system}: {self.method} -> {answer} in {_ms(self.duration)}ms"

    def fields(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "method": self.method,
            "status": self.status,
            "duration_ms": _ms(self.duration),
        }


@record
class HelpdeskRetry(Event):
    """A helpdesk call that failed in a way worth another try (a 5xx, 429, a timeout, a
    lost connection, a write refused before it was taken), sent again after ``delay``."""

    name: ClassVar[str] = HELPDESK_RETRY
    level: ClassVar[int] = logging.INFO
    system: str
    call: str
    attempt: int
    """The attempt that failed (1 for the first)."""
    delay: float
    reason: str

    def message(self) -> str:
        return (
            f"{self.system}: {self.call}: attempt {self.attempt} failed ({self.reason}); "
            f"again in {format_duration(self.delay)}"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "call": self.call,
            "attempt": self.attempt,
            "delay_ms": _ms(self.delay),
            "reason": self.reason,
        }


@record
class StepRetry(Event):
    """A step that failed and has ``retry:`` left runs again after ``delay``."""

    name: ClassVar[str] = STEP_RETRY
    level: ClassVar[int] = logging.INFO
    runner: str
    run_id: str | None
    step: str
    """The step's config path."""
    attempt: int
    delay: float
    error: str

    def message(self) -> str:
        return (
            f"runner {self.runner!r}: {self.step}: attempt {self.attempt} failed "
            f"({self.error}); again in {format_duration(self.delay)}"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "run_id": self.run_id,
            "step": self.step,
            "attempt": self.attempt,
            "delay_ms": _ms(self.delay),
            "error": self.error,
        }


# -- the console -----------------------------------------------------------------------------


@record
class ConsoleLogin(Event):
    name: ClassVar[str] = CONSOLE_LOGIN
    user: str
    client: str

    def message(self) -> str:
        return f"console: {self.user!r} logged in from {self.client or '?'}"

    def fields(self) -> dict[str, Any]:
        return {"user": self.user, "client": self.client}


@record
class ConsoleLoginFailed(Event):
    """A failed console login (never with the password); ``limited`` when refused because
    of too many failures."""

    name: ClassVar[str] = CONSOLE_LOGIN_FAILED
    level: ClassVar[int] = logging.WARNING
    user: str
    client: str
    limited: bool = False

    def message(self) -> str:
        why = "too many failed logins, wait" if self.limited else "wrong user name or password"
        return f"console: login as {self.user!r} from {self.client or '?'} refused: {why}"

    def fields(self) -> dict[str, Any]:
        return {"user": self.user, "client": self.client, "limited": self.limited}


@record
class _RunnerSwitched(Event):
    runner: str
    by: str = ""
    verb: ClassVar[str] = ""

    def message(self) -> str:
        return f"runner {self.runner!r} {self.verb}" + (f" by {self.by}" if self.by else "")

    def fields(self) -> dict[str, Any]:
        return {"runner": self.runner, "by": self.by}


@record
class RunnerPaused(_RunnerSwitched):
    """A runner was paused: its fires are skipped until it is resumed."""

    name: ClassVar[str] = RUNNER_PAUSED
    verb: ClassVar[str] = "paused"


@record
class RunnerResumed(_RunnerSwitched):
    name: ClassVar[str] = RUNNER_RESUMED
    verb: ClassVar[str] = "resumed"


@record
class DecisionCorrected(Event):
    """A person confirmed or corrected a classification from the console's review queue."""

    name: ClassVar[str] = DECISION_CORRECTED
    ticket_id: str
    model: str
    label: str
    previous: str
    by: str

    def message(self) -> str:
        return (
            f"ticket {self.ticket_id}: {self.model} label {self.previous!r} -> {self.label!r} "
            f"by {self.by}"
        )

    def fields(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, "model": self.model, "by": self.by}


# -- the process -----------------------------------------------------------------------------


@record
class LoopError(Event):
    """An error the event loop reported itself (asyncio's exception handler): a failed
    ``accept()`` when the process is out of file descriptors, a callback that raised, a
    task's exception never retrieved. The same message is reported at most once a minute,
    with how often it came meanwhile."""

    name: ClassVar[str] = LOOP_ERROR
    level: ClassVar[int] = logging.ERROR
    problem: str
    error: BaseException | None = field(default=None, compare=False, repr=False)
    repeated: int = 0
    """How often the same problem came since it was last reported (and was not logged)."""

    @property
    def exc(self) -> BaseException | None:
        return self.error

    def message(self) -> str:
        more = f" ({self.repeated} more since the last report)" if self.repeated else ""
        if self.error is None:
            return f"event loop: {self.problem}{more}"
        return f"event loop: {self.problem}: {type(self.error).__name__}: {self.error}{more}"

    def fields(self) -> dict[str, Any]:
        return {"problem": self.problem, "repeated": self.repeated}


@record
class LoopBlocked(Event):
    """The event loop was blocked; ``runner`` and ``step`` name what ran on it."""

    name: ClassVar[str] = LOOP_BLOCKED
    level: ClassVar[int] = logging.WARNING
    blocked: float
    runner: str | None
    step: str | None
    where: str | None

    def message(self) -> str:
        return (
            f"the event loop has been blocked for {self.blocked:.3f}s (runner {self.runner}, "
            f"step {self.step}, at {self.where})"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "blocked_ms": _ms(self.blocked),
            "runner": self.runner,
            "step": self.step,
            "where": self.where,
        }


@record
class ServiceCloseFailed(Event):
    name: ClassVar[str] = SERVICE_CLOSE_FAILED
    level: ClassVar[int] = logging.ERROR
    service: str
    error: BaseException = field(compare=False)

    @property
    def exc(self) -> BaseException | None:
        return self.error

    def message(self) -> str:
        return (
            f"service {self.service!r} failed to close: {type(self.error).__name__}: {self.error}"
        )

    def fields(self) -> dict[str, Any]:
        return {"service": self.service}


@record
class LedgerFailed(Event):
    """The ledger could not be written (reported once a minute at most); runs go on."""

    name: ClassVar[str] = LEDGER_FAILED
    level: ClassVar[int] = logging.ERROR
    path: str
    error: str
    pending: int

    def message(self) -> str:
        return (
            f"the run ledger {self.path} cannot be written ({self.error}); {self.pending} runs "
            "wait to be recorded, runs go on"
        )

    def fields(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error, "pending": self.pending}


@record
class OrchestratorReady(Event):
    name: ClassVar[str] = ORCHESTRATOR_READY
    runners: int
    triggers: int
    one_time: int

    def message(self) -> str:
        return f"ready: runners={self.runners} triggers={self.triggers} one_time={self.one_time}"

    def fields(self) -> dict[str, Any]:
        return {"runners": self.runners, "triggers": self.triggers}


@record
class ListenerStarted(Event):
    name: ClassVar[str] = ORCHESTRATOR_LISTENING
    host: str
    port: int
    console: bool = False

    def message(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        line = f"listening on http://{shown}:{self.port}"
        return f"{line}; console: http://{shown}:{self.port}/" if self.console else line

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.console:
            body["console"] = f"http://{self.host}:{self.port}/"
        return body


@record
class OrchestratorDraining(Event):
    """Shutdown waits for running runs."""

    name: ClassVar[str] = ORCHESTRATOR_STOPPING
    runners: tuple[str, ...]
    timeout: float

    def message(self) -> str:
        return (
            f"stopping: waiting up to {format_duration(self.timeout)} for {len(self.runners)} "
            f"running runs ({', '.join(self.runners)})"
        )

    def fields(self) -> dict[str, Any]:
        return {"running": len(self.runners)}


@record
class OrchestratorCancelling(Event):
    name: ClassVar[str] = ORCHESTRATOR_STOPPING
    level: ClassVar[int] = logging.WARNING
    runners: tuple[str, ...]

    def message(self) -> str:
        return f"cancelling {len(self.runners)} runs still running: {', '.join(self.runners)}"

    def fields(self) -> dict[str, Any]:
        return {"cancelled": list(self.runners)}


@record
class ServiceAbandoned(Event):
    """A service's ``open()`` or ``close()`` was still going when the stop came (opening) or
    its time was up (closing): it is left behind so that the process stops."""

    name: ClassVar[str] = SERVICE_ABANDONED
    level: ClassVar[int] = logging.WARNING
    service: str
    stage: str
    """``opening`` or ``closing``."""
    waited: float

    def message(self) -> str:
        return (
            f"service {self.service!r} was still {self.stage} after "
            f"{format_duration(self.waited)}: abandoned, so that the service stops"
        )

    def fields(self) -> dict[str, Any]:
        return {"service": self.service, "stage": self.stage, "waited_s": round(self.waited, 3)}


@record
class ThreadsAbandoned(Event):
    name: ClassVar[str] = ORCHESTRATOR_STOPPING
    level: ClassVar[int] = logging.WARNING
    count: int

    def message(self) -> str:
        return f"{self.count} sync pipes are still running in worker threads; they are abandoned"

    def fields(self) -> dict[str, Any]:
        return {"abandoned_threads": self.count}


@record
class RunsStubborn(Event):
    name: ClassVar[str] = ORCHESTRATOR_STOPPING
    level: ClassVar[int] = logging.ERROR
    runners: tuple[str, ...]
    grace: float

    def message(self) -> str:
        runs = ", ".join(self.runners)
        return f"runs ignored cancellation for {format_duration(self.grace)}: {runs}"

    def fields(self) -> dict[str, Any]:
        return {"stubborn": list(self.runners)}


@record
class OrchestratorStopped(Event):
    name: ClassVar[str] = ORCHESTRATOR_STOPPED

    def message(self) -> str:
        return "stopped"


@record
class RunnerSummary(Event):
    """What one runner did while the orchestrator ran (logged at shutdown)."""

    name: ClassVar[str] = RUNNER_SUMMARY
    runner: str
    runs: int
    failures: int
    skips: int
    cancelled: int
    missed: int
    timeouts: int
    stuck: int
    mean: float
    max: float

    def message(self) -> str:
        return (
            f"runner {self.runner!r}: {self.runs} runs, {self.failures} failed, {self.skips} "
            f"skipped, {self.missed} missed, {self.timeouts} timed out, {self.cancelled} "
            f"cancelled, mean {self.mean * 1000:.1f}ms, max {self.max * 1000:.1f}ms"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "runs": self.runs,
            "failures": self.failures,
            "skips": self.skips,
            "cancelled": self.cancelled,
            "missed": self.missed,
            "timeouts": self.timeouts,
            "stuck": self.stuck,
            "mean_ms": _ms(self.mean),
            "max_ms": _ms(self.max),
        }


# -- HTTP ------------------------------------------------------------------------------------


@record
class HttpRequestServed(Event):
    name: ClassVar[str] = HTTP_REQUEST
    level: ClassVar[int] = logging.DEBUG
    method: str
    path: str
    status: int
    client: str
    duration: float

    def message(self) -> str:
        return f"{self.method} {self.path} -> {self.status} in {_ms(self.duration)}ms"

    def fields(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "client": self.client,
            "duration_ms": _ms(self.duration),
        }


@record
class HttpRequestFailed(Event):
    """A route raised: the client got a 500."""

    name: ClassVar[str] = HTTP_REQUEST
    level: ClassVar[int] = logging.ERROR
    method: str
    path: str
    error: BaseException = field(compare=False)

    @property
    def exc(self) -> BaseException | None:
        return self.error

    def message(self) -> str:
        return f"{self.method} {self.path} failed: {type(self.error).__name__}: {self.error}"

    def fields(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path}


# -- summaries -------------------------------------------------------------------------------


def summarise(actions: Sequence[Action], decisions: Sequence[Decision]) -> str:
    """``3 tickets; queue Billing 2, IT Support 1 (1 below threshold -> Review); 3 notes``."""
    if not actions and not decisions:
        return ""
    tickets = {a.ticket_id for a in actions if a.ticket_id is not None}
    tickets.update(d.ticket_id for d in decisions if d.ticket_id is not None)
    by_field: dict[str, dict[str, int]] = {}
    notes = created = requests = 0
    for action in actions:
        kind = action.kind.value
        if kind == "ticket_updated":
            for name, (_, after) in action.changes.items():
                values = by_field.setdefault(name, {})
                values[str(after)] = values.get(str(after), 0) + 1
        elif kind == "note_added":
            notes += 1
        elif kind == "ticket_created":
            created += 1
        else:
            requests += 1
    below: dict[str, int] = {}
    for decision in decisions:
        if decision.below_threshold:
            below[str(decision.used)] = below.get(str(decision.used), 0) + 1
    parts = [f"{len(tickets)} ticket{'s' if len(tickets) != 1 else ''}"] if tickets else []
    placed: set[str] = set()
    for name, values in by_field.items():
        text = f"{name} " + ", ".join(f"{v} {n}" for v, n in values.items())
        fallbacks = [(used, n) for used, n in below.items() if used in values]
        if fallbacks:
            placed.update(used for used, _ in fallbacks)
            text += " (" + ", ".join(f"{n} below threshold -> {u}" for u, n in fallbacks) + ")"
        parts.append(text)
    rest = [(used, n) for used, n in below.items() if used not in placed]
    if rest:
        parts.append(", ".join(f"{n} below threshold -> {u}" for u, n in rest))
    if not by_field and decisions:
        parts.append(f"{len(decisions)} decision{'s' if len(decisions) != 1 else ''}")
    for count, word in ((notes, "note"), (created, "created"), (requests, "HTTP request")):
        if count:
            plural = "s" if count != 1 and word != "created" else ""
            parts.append(f"{count} {word}{plural}")
    return "; ".join(parts)


# -- the bus ---------------------------------------------------------------------------------

Subscriber = Callable[[Any], object]
"""A callable taking one event. ``async def`` subscribers get their own queue and task."""

REPORT_EVERY = 60.0
"""Seconds between two reports of the same failing subscriber."""


class _Subscription:
    __slots__ = ("callback", "failures", "kinds", "last_report", "name", "suppressed")

    def __init__(self, callback: Subscriber, kinds: tuple[type[Event], ...], name: str) -> None:
        self.callback = callback
        self.kinds = kinds
        self.name = name
        self.failures = 0
        self.suppressed = 0
        self.last_report = -float("inf")


class _QueuedSubscription(_Subscription):
    """An async subscriber: events wait in its own bounded queue for its own task, so a
    slow one delays nothing but itself."""

    __slots__ = ("dropped", "idle", "queue", "task", "wake")

    def __init__(
        self, callback: Subscriber, kinds: tuple[type[Event], ...], name: str, bound: int
    ) -> None:
        super().__init__(callback, kinds, name)
        self.queue: deque[Event] = deque(maxlen=bound)
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self.wake: asyncio.Event | None = None
        self.idle: asyncio.Event | None = None


_Route = tuple[tuple[_Subscription, ...], tuple[_QueuedSubscription, ...]]
"""For one event type: its plain subscribers, then its async ones."""


class EventBus:
    """Delivers each published event to every subscriber that wants its type.

    Plain subscribers are called at once, in order of subscription, on the publisher's
    thread: they must be quick (counting, formatting a line, appending to a buffer that
    another thread writes). ``async def`` subscribers each get a bounded queue and a task of
    their own. A subscriber that raises keeps its subscription; its failure is logged once
    per minute at most, and no other subscriber and no run notices.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._subscriptions: list[_Subscription] = []
        self._routes: dict[type[Event], _Route] = {}
        self._clock = clock

    def subscribe(
        self,
        callback: Subscriber,
        *kinds: type[Event],
        name: str | None = None,
        bound: int = 10_000,
    ) -> Callable[[], None]:
        """Deliver events of ``kinds`` (default: every event) to ``callback``; returns a
        function that ends the subscription."""
        label = name or getattr(callback, "__qualname__", None) or repr(callback)
        wanted = kinds or (Event,)
        subscription: _Subscription
        if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - a callable object's method
        ):
            subscription = _QueuedSubscription(callback, wanted, label, bound)
        else:
            subscription = _Subscription(callback, wanted, label)
        self._subscriptions.append(subscription)
        self._routes.clear()

        def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
                self._routes.clear()
                if isinstance(subscription, _QueuedSubscription) and subscription.task:
                    subscription.task.cancel()

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` now (plain subscribers) or enqueue it (async ones)."""
        route = self._routes.get(type(event))
        if route is None:
            route = self._route(type(event))
        plain, queued = route
        for subscription in plain:
            try:
                subscription.callback(event)
            except Exception as exc:
                self._failed(subscription, event, exc)
        for waiting in queued:
            self._enqueue(waiting, event)

    def _route(self, kind: type[Event]) -> _Route:
        wanted = [s for s in self._subscriptions if issubclass(kind, s.kinds)]
        route = (
            tuple(s for s in wanted if not isinstance(s, _QueuedSubscription)),
            tuple(s for s in wanted if isinstance(s, _QueuedSubscription)),
        )
        self._routes[kind] = route
        return route

    def wants(self, kind: type[Event]) -> bool:
        """Whether publishing an event of ``kind`` now would reach anyone: a subscriber
        whose callable has a ``wants(kind)`` method (the log's: is that level enabled?)
        is asked. The runner builds ``run.started`` only when someone wants it."""
        route = self._routes.get(kind)
        if route is None:
            route = self._route(kind)
        plain, queued = route
        if queued:
            return True
        for subscription in plain:
            wants = getattr(subscription.callback, "wants", None)
            if wants is None or wants(kind):
                return True
        return False

    @property
    def subscribers(self) -> list[str]:
        return [s.name for s in self._subscriptions]

    async def aclose(self, grace: float = 1.0) -> None:
        """Give async subscribers up to ``grace`` seconds for what waits for them, then
        end their tasks."""
        import asyncio

        for subscription in self._subscriptions:
            if not isinstance(subscription, _QueuedSubscription) or subscription.task is None:
                continue
            if subscription.queue and subscription.idle is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await subscription.idle.wait()
            subscription.task.cancel()
            await asyncio.gather(subscription.task, return_exceptions=True)
            subscription.task = None

    def _enqueue(self, subscription: _QueuedSubscription, event: Event) -> None:
        import asyncio

        if len(subscription.queue) == subscription.queue.maxlen:
            subscription.dropped += 1
        subscription.queue.append(event)
        if subscription.task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # delivered once a loop runs and another event arrives
            subscription.wake = asyncio.Event()
            subscription.idle = asyncio.Event()
            subscription.task = loop.create_task(
                self._drain(subscription), name=f"otai-subscriber:{subscription.name}"
            )
        assert subscription.wake is not None
        assert subscription.idle is not None
        subscription.idle.clear()
        subscription.wake.set()

    async def _drain(self, subscription: _QueuedSubscription) -> None:
        assert subscription.wake is not None
        assert subscription.idle is not None
        while True:
            await subscription.wake.wait()
            subscription.wake.clear()
            while subscription.queue:
                event = subscription.queue.popleft()
                try:
                    await subscription.callback(event)  # type: ignore[misc]
                except Exception as exc:
                    self._failed(subscription, event, exc)
            subscription.idle.set()

    def _failed(self, subscription: _Subscription, event: Event, exc: Exception) -> None:
        subscription.failures += 1
        now = self._clock()
        if now - subscription.last_report < REPORT_EVERY:
            subscription.suppressed += 1
            return
        suppressed, subscription.suppressed = subscription.suppressed, 0
        subscription.last_report = now
        more = f" ({suppressed} more failures since the last report)" if suppressed else ""
        # Straight to logging, not through the bus: a failing log subscriber must not loop.
        logger.error(
            "event subscriber %s failed on %s: %s: %s%s; it stays subscribed",
            subscription.name,
            event.name,
            type(exc).__name__,
            exc,
            more,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={
                "event": SUBSCRIBER_FAILED,
                "fields": {
                    "subscriber": subscription.name,
                    "on": event.name,
                    "failures": subscription.failures,
                },
            },
        )


_ORDINARY_MODULES = frozenset({"httpx", "httpcore", "sqlite3", "ssl", "pydantic_core"})


def ordinary(exc: BaseException) -> bool:
    """Whether ``exc`` is an ordinary failure of the outside world or of input (this
    package's errors, OS and network errors, timeouts, HTTP client errors), as opposed to a
    bug, whose traceback is what helps."""
    if isinstance(exc, OpenTicketAIError | OSError | TimeoutError):
        return True
    return type(exc).__module__.split(".")[0] in _ORDINARY_MODULES


class LogSubscriber:
    """Writes each event as a log record on the ``open_ticket_ai`` logger: ``event`` (the
    name) and ``fields`` ride along for the text and JSON formatters. A run that ended
    DEBUG-logs each of its actions and decisions too."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self._log = log
        self._ended: dict[type[Event], bool] = {}

    def wants(self, kind: type[Event]) -> bool:
        """Whether an event of ``kind`` would be written at the logger's level now."""
        return self._log.isEnabledFor(kind.level)

    def __call__(self, event: Event) -> None:
        kind = type(event)
        ended = self._ended.get(kind)
        if ended is None:
            ended = self._ended[kind] = issubclass(kind, RunEnded)
        level = event.level
        if ended and kind is RunFailed and event.outcome is RunOutcome.TIMED_OUT:  # type: ignore[attr-defined]
            level = logging.DEBUG  # already reported by run.timeout
        log = self._log
        if log.isEnabledFor(level):
            exc = event.exc
            # An ordinary failure (a refused connection, a helpdesk's error answer, a bad
            # param) is its one line; its traceback is for DEBUG. A bug keeps it always.
            shown = exc is not None and (not ordinary(exc) or log.isEnabledFor(logging.DEBUG))
            log.log(
                level,
                event.message(),
                exc_info=(type(exc), exc, exc.__traceback__) if shown and exc else None,
                extra={"event": event.name, "fields": event.fields()},
            )
        if ended and (event.actions or event.decisions) and log.isEnabledFor(logging.DEBUG):  # type: ignore[attr-defined]
            self._details(event)  # type: ignore[arg-type]

    def _details(self, event: RunEnded) -> None:
        for action in event.actions:
            self._log.debug(
                "run %s: %s",
                event.run_id,
                action.describe(),
                extra={"event": event.name, "fields": {"run_id": event.run_id}},
            )
        for decision in event.decisions:
            self._log.debug(
                "run %s: %s",
                event.run_id,
                decision.describe(),
                extra={"event": event.name, "fields": {"run_id": event.run_id}},
            )


def payload_size(payload: Any) -> int | None:
    """The size in bytes of a trigger payload as JSON (None without one)."""
    if payload is None:
        return None
    if isinstance(payload, bytes | str):
        return len(payload)
    try:
        return len(json.dumps(payload, default=str, separators=(",", ":")))
    except (TypeError, ValueError):
        return None
