"""Control: the narrow interface through which the HTTP side (and anything else outside the
runtime) steers a running orchestrator. The orchestrator implements it; the HTTP package
depends on this protocol only, so the runtime never imports the HTTP side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.triggers.base import FireOutcome, Trigger
from open_ticket_ai.runtime.events import EventBus, RunEnded
from open_ticket_ai.runtime.health import RunnerHealth
from open_ticket_ai.runtime.review import Correction

__all__ = ["Control", "Listener", "ListenerFactory"]


class Control(Protocol):
    """What a listener may ask of a running orchestrator."""

    @property
    def bus(self) -> EventBus:
        """Every event of the orchestrator, for subscribers outside the runtime."""
        ...

    @property
    def env(self) -> Mapping[str, str]:
        """The environment templates in settings may read (``orchestrator.http.token``)."""
        ...

    @property
    def runner_ids(self) -> Collection[str]: ...

    def trigger(self, trigger_id: str) -> Trigger[Any] | None:
        """The configured trigger ``trigger_id``, if any."""
        ...

    def fire(self, trigger_id: str, payload: Any = None) -> list[FireOutcome]:
        """Fire every runner listing ``trigger_id`` now; refusals are published."""
        ...

    def fire_runner(self, runner_id: str, payload: Any = None) -> FireOutcome:
        """Fire one runner now, as the trigger ``manual``."""
        ...

    def subscribe_run_finished(self, callback: Callable[[RunEnded], None]) -> None: ...

    def health(self) -> dict[str, RunnerHealth]:
        """Each runner's state, by runner id."""
        ...

    def triggers_of(self, runner_id: str) -> list[str]:
        """The ids of the triggers a runner listens to."""
        ...

    def ticket_url(self, system_id: str, ticket_id: str) -> str | None:
        """Where the ticket opens in its helpdesk's web interface, when the adapter knows."""
        ...

    def ledger_path(self) -> Path | None:
        """The run ledger's file (None without a ledger), to open read-only."""
        ...

    async def correct_decision(
        self, run_id: str, position: int, label: str, *, user: str
    ) -> Correction:
        """Write a corrected label to the helpdesk and record it (raises CorrectionError)."""
        ...

    def pause(self, runner_id: str, *, by: str = "") -> bool:
        """Pause a runner (its fires are skipped); False for an unknown runner."""
        ...

    def resume(self, runner_id: str, *, by: str = "") -> bool:
        """Resume a paused runner; False for an unknown runner."""
        ...

    def readiness(self) -> str | None:
        """None when services are open and triggers armed; else why not (``starting``,
        ``stopping``)."""
        ...

    def next_fires(self) -> dict[str, float]:
        """Per runner with a time trigger, the POSIX time of its next fire."""
        ...


class Listener(Protocol):
    """A started listener: the orchestrator stops it first at shutdown."""

    port: int

    async def stop(self) -> None: ...


ListenerFactory = Callable[[HttpListenerConfig, Control], Awaitable[Listener]]
"""Starts a listener for a running orchestrator (``open_ticket_ai.http.start_listener``)."""
