"""Log output for the ``otai`` command: readable text lines or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from open_ticket_ai.core.secrets import SECRETS

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]


_second: list[Any] = [None, ""]
"""The last whole second formatted, and its text: a busy service logs many lines a second."""


def _timestamp(record: logging.LogRecord) -> str:
    """``2026-01-01T10:00:00.123Z`` (UTC, milliseconds)."""
    created = record.created
    whole = int(created)
    micro = round((created - whole) * 1_000_000)  # as datetime rounds a POSIX time
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    if _second[0] != whole:
        moment = datetime.fromtimestamp(whole, UTC)
        _second[:] = [whole, moment.strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{micro // 1000:03d}Z"


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}
"""Control characters as escapes: a newline in a ticket's subject or a helpdesk's error must
not start a line of its own that reads like a log record."""


class TextFormatter(logging.Formatter):
    """``2026-01-01T10:00:00.000Z INFO  run.finished  runner 'x' succeeded in 3.1ms``.

    One record is one line (a traceback follows on lines of its own): control characters in
    the message are escaped, so data cannot forge a log line."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", record.name)
        message = record.getMessage().translate(_CONTROL)
        line = f"{_timestamp(record)} {record.levelname:<7} {event:<22} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return SECRETS.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``event``, ``message`` and the event's
    fields (``runner``, ``trigger``, ``duration_ms``, ``error``, ...); ``traceback`` when any."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                body.setdefault(key, value)
        if record.exc_info:
            body["traceback"] = self.formatException(record.exc_info)
        return SECRETS.redact(_ENCODE(body))


_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode


def configure_logging(level: str = "INFO", fmt: str = "text", file: Path | None = None) -> None:
    """Send every log record to stderr in the chosen format, and to ``file`` too when one is
    given (appended to; its directory is made)."""
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    # Neither format shows the caller's file and line, its thread or process: they are not
    # looked up for each record (as the logging docs advise). A run logs its end, and at
    # INFO its start too.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
        existing.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Per-request lines from the HTTP client would drown the run events.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpcore").setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
