"""Drive ``otai run`` as a real subprocess: JSON log lines from stderr, signals, cleanup.

    with OtaiProcess("run", str(config), "--log-format", "json") as otai:
        otai.wait_for_event("orchestrator.ready")
        otai.send_signal(signal.SIGTERM)
        assert otai.wait(10) == 0

A background thread reads stderr line by line; each JSON object is kept with ``_at``, the
``time.monotonic()`` when the line arrived (the same clock the test HTTP server records hits
on). Lines that are not JSON are kept in :attr:`OtaiProcess.other_lines`. Leaving the ``with``
block (or :meth:`close`) kills the process if it still runs and joins the reader threads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["OtaiProcess", "write_config"]

Event = dict[str, Any]


def write_config(directory: Path, text: str, name: str = "config.yml") -> Path:
    """Write a YAML config (dedented text) into ``directory`` and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


class OtaiProcess:
    """``python -m open_ticket_ai ARGS`` with its stderr JSON events collected as they come."""

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        pythonpath: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        full_env = dict(os.environ)
        full_env.pop("OTAI_CONFIG", None)
        if pythonpath is not None:
            parts = [str(pythonpath), full_env.get("PYTHONPATH", "")]
            full_env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
        full_env.update(env or {})
        self.args = args
        self.events: list[Event] = []
        self.other_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self._cond = threading.Condition()
        self._stderr_done = False
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "open_ticket_ai", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=full_env,
            cwd=cwd,
        )
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> OtaiProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the process if it still runs, reap it and join the reader threads."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        finally:
            for thread in self._threads:
                thread.join(timeout=10)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()

    # -- readers --------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            at = time.monotonic()
            stripped = line.rstrip("\n")
            try:
                event = json.loads(stripped)
            except ValueError:
                event = None
            with self._cond:
                if isinstance(event, dict):
                    event["_at"] = at
                    self.events.append(event)
                elif stripped:
                    self.other_lines.append(stripped)
                self._cond.notify_all()
        with self._cond:
            self._stderr_done = True
            self._cond.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.stdout_lines.append(line.rstrip("\n"))

    # -- queries --------------------------------------------------------------------------

    def find(self, name: str | None = None, **fields: Any) -> list[Event]:
        """The events so far named ``name`` whose fields equal ``fields``, oldest first."""
        with self._cond:
            return [e for e in self.events if _matches(e, name, fields)]

    def wait_for_event(
        self,
        name: str,
        *,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[Event], bool] | None = None,
        **fields: Any,
    ) -> Event:
        """Block until ``count`` matching events have been logged; return the last of them.

        Raises AssertionError (with the log so far) on timeout or when the process exits
        without logging them."""

        def found() -> list[Event]:
            return [
                e for e in self.events if _matches(e, name, fields) and (where is None or where(e))
            ]

        with self._cond:
            ok = self._cond.wait_for(lambda: len(found()) >= count or self._stderr_done, timeout)
            matching = found()
            if ok and len(matching) >= count:
                return matching[count - 1]
        raise AssertionError(
            f"wanted {count} x {name} {fields or ''} within {timeout}s, got {len(matching)}; "
            f"process {'exited ' + str(self.proc.returncode) if self._stderr_done else 'running'}"
            f"\n{self.log_text()}"
        )

    def log_text(self) -> str:
        """Everything read from stderr and stdout so far, for assertion messages."""
        with self._cond:
            lines = [json.dumps({k: v for k, v in e.items() if k != "_at"}) for e in self.events]
            return "\n".join(
                [*lines, *self.other_lines, *(f"stdout: {s}" for s in self.stdout_lines)]
            )

    @property
    def stderr_text(self) -> str:
        """The non-JSON stderr lines and the JSON events' messages, one per line."""
        with self._cond:
            return "\n".join([*(str(e.get("message")) for e in self.events), *self.other_lines])

    # -- control --------------------------------------------------------------------------

    def send_signal(self, sig: signal.Signals) -> float:
        """Send ``sig``; return the ``time.monotonic()`` it was sent at."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        return sent

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit and the logs to be read; return its exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"otai did not exit within {timeout}s\n{self.log_text()}"
            ) from None
        for thread in self._threads:
            thread.join(timeout=10)
        return code


def _matches(event: Event, name: str | None, fields: Mapping[str, Any]) -> bool:
    if name is not None and event.get("event") != name:
        return False
    return all(event.get(key) == value for key, value in fields.items())
