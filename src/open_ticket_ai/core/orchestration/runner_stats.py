"""RunnerStats: what one runner did, counted, and its ``runner.summary`` event."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from open_ticket_ai.core.orchestration import events

__all__ = ["RunnerStats"]


@dataclass
class RunnerStats:
    """What a runner did: runs started, their failures, skipped and missed fires, timeouts,
    durations."""

    runs: int = 0
    failures: int = 0
    skips: int = 0
    cancelled: int = 0
    missed: int = 0
    timeouts: int = 0
    stuck: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    @property
    def mean_seconds(self) -> float:
        finished = self.runs - self.cancelled
        return self.total_seconds / finished if finished > 0 else 0.0

    def emit_summary(self, runner: str) -> None:
        """Log ``runner.summary`` with every count."""
        events.emit(
            logging.INFO,
            events.RUNNER_SUMMARY,
            f"runner {runner!r}: {self.runs} runs, {self.failures} failed, {self.skips} "
            f"skipped, {self.missed} missed, {self.timeouts} timed out, {self.cancelled} "
            f"cancelled, mean {self.mean_seconds * 1000:.1f}ms, "
            f"max {self.max_seconds * 1000:.1f}ms",
            runner=runner,
            runs=self.runs,
            failures=self.failures,
            skips=self.skips,
            cancelled=self.cancelled,
            missed=self.missed,
            timeouts=self.timeouts,
            stuck=self.stuck,
            mean_ms=round(self.mean_seconds * 1000, 3),
            max_ms=round(self.max_seconds * 1000, 3),
        )
