"""The Trigger base classes: the plugin API for deciding when runners fire."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from open_ticket_ai.core.component import Component, ParamsT
from open_ticket_ai.core.pipes.result import PipeResult

__all__ = [
    "CallbackHost",
    "EventTrigger",
    "FireOutcome",
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

    def first_fire(self, start: float) -> float | None:
        """The first fire time for a schedule armed at ``start``; None for never."""
        return self.next_fire_after(start, start)

    def next_fire_after(self, after: float, start: float) -> float | None:
        """The first fire time strictly after ``after`` for a schedule armed at ``start``."""
        raise NotImplementedError


@dataclass(frozen=True)
class FireOutcome:
    """What one fire did for one runner: started a run (``run_id``) or not (``reason``)."""

    runner: str
    run_id: str | None
    reason: str | None = None

    @property
    def started(self) -> bool:
        return self.run_id is not None


class TriggerHost(Protocol):
    """What the orchestrator gives an event trigger to act through."""

    def fire(self, payload: Any = None) -> list[FireOutcome]:
        """Fire every runner listing this trigger now, with ``payload`` as
        ``trigger.payload`` in their templates."""
        ...

    def subscribe_run_finished(self, callback: Callable[[str, PipeResult], None]) -> None:
        """Call ``callback(runner_id, result)`` whenever any run ends."""
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
    subscribe_callback: Callable[[Callable[[str, PipeResult], None]], None]

    def fire(self, payload: Any = None) -> list[FireOutcome]:
        return self.fire_callback(payload)

    def subscribe_run_finished(self, callback: Callable[[str, PipeResult], None]) -> None:
        self.subscribe_callback(callback)
