"""HealthBoard: each runner's state as its events tell it (running, last run, counts), for
``GET /health`` and ``otai status``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from open_ticket_ai.runtime.events import (
    Event,
    RunEnded,
    RunOutcome,
    RunSkipped,
    RunStarted,
)

__all__ = ["WATCHED", "HealthBoard", "RunnerHealth"]

WATCHED: tuple[type[Event], ...] = (RunStarted, RunEnded, RunSkipped)


@dataclass(slots=True)
class RunnerHealth:
    """One runner's state: the run in progress (``running``, ``run_id``, since when), the
    last ended run (``last_*``) and counts since start."""

    running: bool = False
    run_id: str | None = None
    running_since: float | None = None
    """POSIX time the current run started."""
    runs: int = 0
    failures: int = 0
    skips: int = 0
    last_status: str | None = None
    """The last ended run's pipeline status (``succeeded``, ``failed``, ``skipped``), or
    ``cancelled``/``stuck``."""
    last_outcome: RunOutcome | None = None
    last_started: float | None = None
    last_duration: float | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        running_for = now - self.running_since if self.running_since is not None else 0.0
        return {
            "running": self.running,
            "run_id": self.run_id,
            "running_for_s": round(max(running_for, 0.0), 3) if self.running else 0.0,
            "runs": self.runs,
            "failures": self.failures,
            "skips": self.skips,
            "last_status": self.last_status,
        }


class HealthBoard:
    """A subscriber (of :data:`WATCHED` events) that keeps a :class:`RunnerHealth` per
    runner, updated in place (it runs after every run); :meth:`snapshot` copies."""

    def __init__(self, runner_ids: list[str]) -> None:
        self._runners: dict[str, RunnerHealth] = {id: RunnerHealth() for id in runner_ids}

    def snapshot(self) -> dict[str, RunnerHealth]:
        """Each runner's state now, as copies the board no longer changes."""
        return {id: copy.copy(state) for id, state in self._runners.items()}

    def __call__(self, event: Event) -> None:
        # Every watched event has a ``runner``.
        current = self._runners.get(event.runner)  # type: ignore[attr-defined]
        if current is None:
            return
        if isinstance(event, RunStarted):
            current.running = True
            current.run_id = event.run_id
            current.running_since = event.started
            current.runs += 1
        elif isinstance(event, RunEnded):
            result = event.result
            current.running = False
            current.running_since = None
            if event.outcome is RunOutcome.FAILED:
                current.failures += 1
            current.last_status = result.status.value if result is not None else event.outcome.value
            current.last_outcome = event.outcome
            current.last_started = event.started
            current.last_duration = event.duration
        elif isinstance(event, RunSkipped):
            current.skips += 1
