"""StateStore: what survives a restart (each trigger's grid anchor, each runner's last fire
and outcome) in one SQLite file, and the lock that keeps one ``otai run`` per file.

Times are wall-clock POSIX seconds: the monotonic clock starts afresh with every boot.
Writes are buffered and committed together a moment later (and at close), so a busy
schedule costs one small transaction per :data:`FLUSH_DELAY`, not one per fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from open_ticket_ai.core.compiled import CompiledConfig
from open_ticket_ai.errors import OpenTicketAIError

__all__ = [
    "DEFAULT_STATE_PATH",
    "FLUSH_DELAY",
    "FireRecord",
    "StateLockedError",
    "StateStore",
    "holder_of",
    "read_state",
    "state_file_of",
]

FLUSH_DELAY = 0.5
"""Seconds between a change and its commit."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS anchors (
    trigger TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    start REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fires (
    runner TEXT NOT NULL,
    trigger TEXT NOT NULL,
    fired_at REAL NOT NULL,
    outcome TEXT,
    finished_at REAL,
    PRIMARY KEY (runner, trigger)
);
CREATE TABLE IF NOT EXISTS paused (
    runner TEXT PRIMARY KEY,
    by TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class StateLockedError(OpenTicketAIError):
    """Another process holds the state file's lock: a second ``otai run`` on it."""


@dataclass(frozen=True)
class FireRecord:
    """A runner's last fire by one trigger: when (wall clock), and how its run ended."""

    runner: str
    trigger: str
    fired_at: float
    outcome: str | None = None
    finished_at: float | None = None


class StateStore:
    """The state file of one orchestrator, held under an exclusive lock while open.

    The lock is ``fcntl.flock`` on ``<state file>.lock``: the operating system drops it when
    the process ends, however it ends, so a crash never leaves a stale lock behind.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(Path(f"{self.path}.lock"))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise OpenTicketAIError(f"state file {self.path}: {exc}") from exc
        self._anchors = {
            row[0]: (row[1], float(row[2]))
            for row in self._db.execute("SELECT trigger, signature, start FROM anchors")
        }
        self._fires = {
            (row[0], row[1]): FireRecord(*row)
            for row in self._db.execute(
                "SELECT runner, trigger, fired_at, outcome, finished_at FROM fires"
            )
        }
        self._dirty_anchors: set[str] = set()
        self._dirty_fires: set[tuple[str, str]] = set()
        self._flush: asyncio.TimerHandle | None = None
        self.closed = False

    # -- reading --------------------------------------------------------------------------

    def anchor(self, trigger: str, signature: str) -> float | None:
        """The persisted start of ``trigger``'s grid, if it was armed with these settings."""
        found = self._anchors.get(trigger)
        return found[1] if found is not None and found[0] == signature else None

    def last_fire(self, runner: str, trigger: str) -> FireRecord | None:
        return self._fires.get((runner, trigger))

    def paused(self) -> set[str]:
        """The runners paused (from the console), which stay paused across restarts."""
        return {row[0] for row in self._db.execute("SELECT runner FROM paused")}

    def set_paused(self, runner: str, paused: bool, *, by: str, at: float) -> None:
        """Pause or resume ``runner`` for good: written at once, not batched."""
        with self._db:
            if paused:
                self._db.execute("INSERT OR REPLACE INTO paused VALUES (?, ?, ?)", (runner, by, at))
            else:
                self._db.execute("DELETE FROM paused WHERE runner = ?", (runner,))

    def records(self) -> list[FireRecord]:
        """Every runner's last fire per trigger."""
        return list(self._fires.values())

    # -- writing --------------------------------------------------------------------------

    def set_anchor(self, trigger: str, signature: str, start: float) -> None:
        self._anchors[trigger] = (signature, start)
        self._dirty_anchors.add(trigger)
        self._later()

    def note_fire(self, runner: str, trigger: str, at: float) -> None:
        old = self._fires.get((runner, trigger))
        self._fires[(runner, trigger)] = FireRecord(
            runner, trigger, at, old.outcome if old else None, old.finished_at if old else None
        )
        self._dirty_fires.add((runner, trigger))
        self._later()

    def note_outcome(self, runner: str, trigger: str, outcome: str, at: float) -> None:
        old = self._fires.get((runner, trigger))
        self._fires[(runner, trigger)] = FireRecord(
            runner, trigger, old.fired_at if old else at, outcome, at
        )
        self._dirty_fires.add((runner, trigger))
        self._later()

    def _later(self) -> None:
        if self._flush is None and not self.closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: written at flush() or close()
            self._flush = loop.call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Commit every buffered change in one transaction."""
        self._flush = None
        if self.closed or not (self._dirty_anchors or self._dirty_fires):
            return
        anchors = [(t, *self._anchors[t]) for t in self._dirty_anchors]
        fires = [
            (r.runner, r.trigger, r.fired_at, r.outcome, r.finished_at)
            for r in (self._fires[key] for key in self._dirty_fires)
        ]
        self._dirty_anchors.clear()
        self._dirty_fires.clear()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO anchors VALUES (?, ?, ?)", anchors)
            self._db.executemany("INSERT OR REPLACE INTO fires VALUES (?, ?, ?, ?, ?)", fires)

    def close(self) -> None:
        """Write what is buffered, close the file and release the lock."""
        if self.closed:
            return
        if self._flush is not None:
            self._flush.cancel()
        try:
            self.flush()
        finally:
            self.closed = True
            self._db.close()
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)


DEFAULT_STATE_PATH = "var/otai-state.sqlite"
"""Where the state file lives, relative to the config file's directory, unless configured."""


def state_file_of(compiled: CompiledConfig) -> Path | None:
    """The state file of a config: ``orchestrator.state_path`` (relative to the config
    file's directory), else :data:`DEFAULT_STATE_PATH` there; None with ``state_path:
    false``, or for a config given as text with no file and no ``state_path``."""
    configured = compiled.loaded.config.orchestrator.state_path
    if configured is False:
        return None
    return compiled.file_beside(configured, DEFAULT_STATE_PATH)


def holder_of(state_path: str | os.PathLike[str]) -> int | None:
    """The pid of the ``otai run`` holding the state file's lock, or None when none does."""
    lock = Path(f"{state_path}.lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_state(
    state_path: str | os.PathLike[str],
) -> tuple[dict[str, float], list[FireRecord]]:
    """Each trigger's grid anchor and every runner's last fire, read without the lock (for
    ``otai status`` beside a running instance). Empty when there is no state file."""
    path = Path(state_path)
    if not path.is_file():
        return {}, []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            anchors = {
                str(r[0]): float(r[1]) for r in db.execute("SELECT trigger, start FROM anchors")
            }
            fires = [
                FireRecord(*row)
                for row in db.execute(
                    "SELECT runner, trigger, fired_at, outcome, finished_at FROM fires"
                )
            ]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise OpenTicketAIError(f"state file {path}: {exc}") from exc
    return anchors, fires


def _lock(path: Path) -> int:
    # Never through a symlink: one planted there would have its target overwritten.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise OpenTicketAIError(
                f"state lock {path} is a symbolic link: remove it (the lock file is never "
                "opened through one)"
            ) from None
        raise OpenTicketAIError(f"state lock {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        state = str(path)[: -len(".lock")]
        raise StateLockedError(
            f"state file {state} is in use by another otai run"
            + (f" (pid {holder})" if holder else "")
            + "; stop it first, or give this config another orchestrator.state_path"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
