"""RunnerStats: what one runner did, counted from its events, and its ``runner.summary``."""

from __future__ import annotations

from dataclasses import dataclass

from open_ticket_ai.runtime.events import (
    Event,
    RunCancelled,
    RunEnded,
    RunFinished,
    RunMissed,
    RunnerSummary,
    RunOutcome,
    RunSkipped,
    RunStuck,
    RunTimeout,
)

__all__ = ["COUNTED", "RunnerStats"]

COUNTED: tuple[type[Event], ...] = (RunEnded, RunSkipped, RunMissed, RunTimeout)
"""The events :meth:`RunnerStats.observe` counts: runs are counted when they end, so that
``run.started`` need not be built when nobody else listens."""


@dataclass(slots=True)
class RunnerStats:
    """What a runner did: runs (counted when they end), their failures, skipped and missed
    fires, timeouts, durations. Kept up to date by :meth:`observe`, a subscriber of the
    runner's events."""

    runs: int = 0
    failures: int = 0
    skips: int = 0
    cancelled: int = 0
    missed: int = 0
    timeouts: int = 0
    stuck: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    last_run_id: str | None = None
    last_status: str | None = None
    """The last ended run's pipeline status (``succeeded``, ``failed``, ``skipped``), or
    ``cancelled``/``stuck``."""
    last_outcome: RunOutcome | None = None
    last_started: float | None = None
    last_duration: float | None = None

    @property
    def mean_seconds(self) -> float:
        finished = self.runs - self.cancelled
        return self.total_seconds / finished if finished > 0 else 0.0

    def observe(self, event: Event) -> None:
        """Count one event of this runner, and keep what its last run was."""
        kind = type(event)
        if kind is RunFinished or isinstance(event, RunEnded):
            ended: RunEnded = event  # type: ignore[assignment]
            outcome = ended.outcome
            duration = ended.duration
            self.runs += 1
            if kind is RunCancelled:
                self.cancelled += 1
            elif kind is RunStuck:
                self.stuck += 1
            else:
                if outcome is RunOutcome.FAILED:
                    self.failures += 1
                self.total_seconds += duration
                if duration > self.max_seconds:
                    self.max_seconds = duration
            result = ended.result
            self.last_run_id = ended.run_id
            self.last_status = result.status.value if result is not None else outcome.value
            self.last_outcome = outcome
            self.last_started = ended.started
            self.last_duration = duration
        elif kind is RunSkipped:
            self.skips += 1
        elif kind is RunMissed:
            self.missed += event.count  # type: ignore[attr-defined]
        elif kind is RunTimeout:
            self.timeouts += 1

    def summary(self, runner: str) -> RunnerSummary:
        """The ``runner.summary`` event with every count."""
        return RunnerSummary(
            runner=runner,
            runs=self.runs,
            failures=self.failures,
            skips=self.skips,
            cancelled=self.cancelled,
            missed=self.missed,
            timeouts=self.timeouts,
            stuck=self.stuck,
            mean=self.mean_seconds,
            max=self.max_seconds,
        )
