"""RunnerHealth: a snapshot of one runner's state (running, last run, counts) for
``GET /health`` and ``otai status``, made by :meth:`PipeRunner.health
<open_ticket_ai.runtime.runner.PipeRunner.health>` from the runner and its counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from open_ticket_ai.runtime.events import RunOutcome

__all__ = ["RunnerHealth"]


@dataclass(frozen=True, slots=True)
class RunnerHealth:
    """A snapshot of one runner's state: the run in progress (``running``, ``run_id``, since
    when), the last ended run (``last_*``) and counts since start."""

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
    paused: bool = False
    """Paused from the console: fires are skipped until it is resumed."""

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
