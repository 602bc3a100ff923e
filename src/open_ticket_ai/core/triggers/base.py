"""The Trigger base classes: the plugin API for deciding when runners fire."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from open_ticket_ai.core.component import Component, ParamsT

if TYPE_CHECKING:
    from open_ticket_ai.runtime.events import RunEnded

__all__ = [
    "CallbackHost",
    "EventTrigger",
    "FireOutcome",
    "FireStatus",
    "TimeTrigger",
    "Trigger",
    "TriggerHost",
]


class Trigger(Component[ParamsT]):
    """Decides when the runners that list it fire. One instance serves every runner naming
    its id. Subclass :class:`TimeTrigger` for schedules."""

    kind: ClassVar[str] = "trigger"

    def __init__(self, params: ParamsT, *, id: str = "") -> None:
        super().__init__(params)
        self.id = id

    def problems(self, runner_ids: Collection[str]) -> list[tuple[str, str]]:
        """Checks against the rest of the config, run at load time: ``(param, message)``
        pairs (e.g. a runner id that is not configured). The default finds none."""
        return []


class TimeTrigger(Trigger[ParamsT]):
    """A trigger whose fire times are pure arithmetic on a clock.

    ``clock`` is ``"monotonic"`` (times are ``time.monotonic()`` seconds; wall-clock jumps move
    nothing) or ``"wall"`` (times are POSIX timestamps). Both methods are pure: given the same
    arguments they return the same answer, and are tested with fixed numbers.
    """

    clock: ClassVar[str] = "monotonic"

    @property
    def fixed_time(self) -> bool:
        """For ``"wall"`` triggers: whether each fire is a fixed time of day (a cron entry
        whose minute and hour fields are not ``*``...). After the wall clock is stepped back
        by up to 3 hours, a fixed-time fire that already happened waits for its next time, as
        Debian's cron does; the others go on from the new time."""
        return True

    def first_fire(self, start: float) -> float | None:
        """The first fire time for a schedule armed at ``start``; None for never."""
        return self.next_fire_after(start, start)

    def next_fire_after(self, after: float, start: float) -> float | None:
        """The first fire time strictly after ``after`` for a schedule armed at ``start``."""
        raise NotImplementedError


class FireStatus(StrEnum):
    """What a fire did for one runner."""

    STARTED = "started"
    QUEUED = "queued"
    """Kept to run when the runner's current run ends (``overlap: queue_one``)."""
    BUSY = "busy"
    PAUSED = "paused"
    """The runner is paused (from the console) until it is resumed."""
    STOPPING = "stopping"
    NO_SUCH_RUNNER = "no_such_runner"


@dataclass(frozen=True)
class FireOutcome:
    """What one fire did for one runner: its ``status``, the run it started (``run_id``),
    and for every other status the ``reason`` in words."""

    runner: str
    status: FireStatus
    run_id: str | None = None
    reason: str | None = None

    @property
    def started(self) -> bool:
        return self.status is FireStatus.STARTED

    @property
    def queued(self) -> bool:
        return self.status is FireStatus.QUEUED

    @property
    def refused(self) -> bool:
        """Neither started nor kept for later."""
        return self.status not in (FireStatus.STARTED, FireStatus.QUEUED)


class TriggerHost(Protocol):
    """What the orchestrator gives an event trigger to act through."""

    def fire(self, payload: Any = None) -> list[FireOutcome]:
        """Fire every runner listing this trigger now, with ``payload`` as
        ``trigger.payload`` in their templates."""
        ...

    def subscribe_run_finished(self, callback: Callable[[RunEnded], None]) -> None:
        """Call ``callback(event)`` with the :class:`~open_ticket_ai.RunEnded` record of
        every run that finishes or fails (not of runs cancelled at shutdown). The
        orchestrator refuses and reports fires that could not start; the trigger need not."""
        ...


class EventTrigger(Trigger[ParamsT]):
    """A trigger that fires when something happens (a webhook call, another runner ending).

    The orchestrator calls :meth:`serve` once, after every service is open, as a task that
    is cancelled at shutdown; the trigger fires through ``host.fire``. Non-overlap holds: a
    fire that finds its runner still running is refused with a reason."""

    needs_http: ClassVar[bool] = False
    """True for triggers reached through the built-in HTTP listener (webhooks): the
    orchestrator then starts the listener even when ``orchestrator.http`` is not set."""

    async def serve(self, host: TriggerHost) -> None:
        """Watch for events for as long as the orchestrator runs. The default does nothing:
        triggers fired from outside (webhooks) need no task of their own."""


@dataclass(frozen=True)
class CallbackHost:
    """A :class:`TriggerHost` made of two callables (the orchestrator's, bound to a trigger)."""

    fire_callback: Callable[[Any], list[FireOutcome]]
    subscribe_callback: Callable[[Callable[[RunEnded], None]], None]

    def fire(self, payload: Any = None) -> list[FireOutcome]:
        return self.fire_callback(payload)

    def subscribe_run_finished(self, callback: Callable[[RunEnded], None]) -> None:
        self.subscribe_callback(callback)
