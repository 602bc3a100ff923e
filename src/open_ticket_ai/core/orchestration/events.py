"""Run events: stable names and fields, emitted as log records on the ``open_ticket_ai`` logger.

Each record carries ``event`` (one of the names below) and ``fields`` (a dict: ``runner``,
``trigger``, ``duration_ms``, ``error``, ...) so a formatter can print text or JSON lines.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "LOOP_BLOCKED",
    "ORCHESTRATOR_READY",
    "ORCHESTRATOR_STOPPED",
    "ORCHESTRATOR_STOPPING",
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
    "emit",
    "logger",
]

logger = logging.getLogger("open_ticket_ai")

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
LOOP_BLOCKED = "loop.blocked"
ORCHESTRATOR_READY = "orchestrator.ready"
ORCHESTRATOR_STOPPING = "orchestrator.stopping"
ORCHESTRATOR_STOPPED = "orchestrator.stopped"
RUNNER_SUMMARY = "runner.summary"


def emit(
    level: int,
    event: str,
    message: str,
    *args: object,
    exc: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log one event. ``message`` is a %-format of ``args``, formatted only when the record
    is written: a disabled level costs one check."""
    if logger.isEnabledFor(level):
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        logger.log(
            level, message, *args, exc_info=exc_info, extra={"event": event, "fields": fields}
        )
