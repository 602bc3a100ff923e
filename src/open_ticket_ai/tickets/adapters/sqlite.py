"""SqliteTicketSystem: an embedded helpdesk in one SQLite file, for demos and trials."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from open_ticket_ai import (
    NewTicket,
    Note,
    ParamsModel,
    Ticket,
    TicketChanges,
    TicketNotFoundError,
    TicketSearch,
    TicketSystem,
    TicketSystemError,
)
from open_ticket_ai.tickets.models import Priority

__all__ = ["SqliteParams", "SqliteTicketSystem"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    queue TEXT NOT NULL,
    priority INTEGER,
    state TEXT NOT NULL DEFAULT 'new',
    requester TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    custom_fields TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS tickets_queue_updated ON tickets (queue, updated, id);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_ticket ON notes (ticket_id, id);
"""


class SqliteParams(ParamsModel):
    path: str = Field("otai-helpdesk.sqlite", min_length=1)
    """The database file; created with its tables when missing, in a directory that exists
    (a typo in the directory must not start an empty helpdesk that is routed forever)."""
    create: bool = False
    """Also create the directories of ``path`` when they are missing."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _ticket(row: sqlite3.Row) -> Ticket:
    return Ticket(
        id=str(row["id"]),
        subject=row["subject"],
        body=row["body"],
        queue=row["queue"],
        priority=row["priority"],
        state=row["state"],
        requester=row["requester"],
        created=datetime.fromisoformat(row["created"]),
        updated=datetime.fromisoformat(row["updated"]),
        custom_fields=json.loads(row["custom_fields"]),
    )


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (the connection is in autocommit mode otherwise)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a COMMIT that failed (busy) leaves it open: it goes too
            db.execute("ROLLBACK")
        raise


BUSY_TIMEOUT = 5.0
"""Seconds a call waits for a file another process is writing."""


def _row(db: sqlite3.Connection, key: int, ticket_id: str) -> sqlite3.Row:
    """The ticket's row; TicketNotFoundError when there is none."""
    row: sqlite3.Row | None = db.execute("SELECT * FROM tickets WHERE id = ?", (key,)).fetchone()
    if row is None:
        raise TicketNotFoundError(f"sqlite: no ticket {ticket_id!r}")
    return row


def _ticket_key(ticket_id: str) -> int:
    try:
        return int(ticket_id)
    except (TypeError, ValueError):
        raise TicketNotFoundError(f"sqlite: no ticket {ticket_id!r} (ids are numbers)") from None


class SqliteTicketSystem(TicketSystem[SqliteParams]):
    """Tickets and internal notes in a SQLite file. Calls run in a worker thread, one at a
    time; the file is in WAL mode, so ``otai tickets`` can read it while the service runs."""

    def __init__(self, params: SqliteParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self._connect)

    def warnings(self) -> list[tuple[str, str]]:
        missing = self._missing_directory()
        return [("path", missing)] if missing else []

    def _missing_directory(self) -> str | None:
        directory = Path(self.params.path).expanduser().parent
        if self.params.create or directory.is_dir():
            return None
        return (
            f"the directory {str(directory)!r} does not exist, so there is no helpdesk at "
            f"{self.params.path!r}: check the path, or set create: true to start a new one"
        )

    def _connect(self) -> None:
        missing = self._missing_directory()
        if missing is not None:
            raise TicketSystemError(f"sqlite: {missing}")
        path = Path(self.params.path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL syncs at checkpoints instead of at every commit: a commit
            # survives a crash of the process (only a power cut can take the last ones), and a
            # routed ticket no longer waits for the disk three times.
            db.execute("PRAGMA synchronous=NORMAL")
            # Never wait inside SQLite: a call on the event loop must not block it. A file
            # another process is writing makes the call wait in a worker thread instead.
            db.execute("PRAGMA busy_timeout=0")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise TicketSystemError(f"sqlite: cannot open {str(path)!r}: {exc}") from exc
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(db)``, in one transaction or statement, on the event loop when the file is
        free (an embedded file answers in microseconds, less than a trip to a worker thread
        takes); in a worker thread, waiting up to :data:`BUSY_TIMEOUT`, when another process
        is writing it or another call holds the connection."""
        if self._db is None:
            await self.open()
        db = self._db
        assert db is not None

        def attempt(deadline: float) -> T | None:
            """The result (no work of this adapter gives None); None when the file is busy
            and ``deadline`` (monotonic) has not passed: nothing of it was applied (a write
            that began is rolled back)."""
            try:
                return work(db)
            except sqlite3.Error as exc:
                busy = getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY"
                if busy and time.monotonic() < deadline:
                    return None
                raise TicketSystemError(
                    f"sqlite {self.params.path!r}: {exc}"
                    + (f" (for {BUSY_TIMEOUT:g} s)" if busy else "")
                ) from exc

        if self._lock.acquire(blocking=False):
            try:
                done = attempt(math.inf)
            finally:
                self._lock.release()
            if done is not None:
                return done

        def waiting() -> T:
            deadline = time.monotonic() + BUSY_TIMEOUT
            with self._lock:
                while (done := attempt(deadline)) is None:
                    time.sleep(0.005)
                return done

        return await asyncio.to_thread(waiting)

    async def search(self, criteria: TicketSearch) -> list[Ticket]:
        where: list[str] = []
        args: list[str | int] = []
        if criteria.queue is not None:
            where.append("queue = ?")
            args.append(criteria.queue)
        if criteria.state is not None:
            where.append("state = ?")
            args.append(criteria.state)
        if criteria.updated_since is not None:
            where.append("updated >= ?")
            args.append(criteria.updated_since.astimezone(UTC).isoformat(timespec="microseconds"))
        sql = "SELECT * FROM tickets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated, id LIMIT ? OFFSET ?"
        args += [criteria.limit, criteria.offset]
        rows = await self._call(lambda db: db.execute(sql, args).fetchall())
        return [_ticket(row) for row in rows]

    async def get(self, ticket_id: str) -> Ticket:
        key = _ticket_key(ticket_id)
        return _ticket(await self._call(lambda db: _row(db, key, ticket_id)))

    async def create(self, ticket: NewTicket) -> Ticket:
        now = _now()
        priority = int(ticket.priority or Priority.NORMAL)

        def insert(db: sqlite3.Connection) -> sqlite3.Row:
            cursor = db.execute(
                "INSERT INTO tickets (subject, body, queue, priority, requester, created, "
                "updated, custom_fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ticket.subject,
                    ticket.body,
                    ticket.queue,
                    priority,
                    ticket.requester,
                    now,
                    now,
                    json.dumps(ticket.custom_fields),
                ),
            )
            assert cursor.lastrowid is not None
            return _row(db, cursor.lastrowid, str(cursor.lastrowid))

        return _ticket(await self._call(insert))

    async def update(self, ticket_id: str, changes: TicketChanges) -> Ticket:
        key = _ticket_key(ticket_id)

        # Read, change and read back in one call (and one transaction).
        def change(db: sqlite3.Connection) -> sqlite3.Row:
            with _transaction(db):
                current = _row(db, key, ticket_id)
                sets: dict[str, Any] = {}
                if changes.subject is not None:
                    sets["subject"] = changes.subject
                if changes.queue is not None:
                    sets["queue"] = changes.queue
                if changes.priority is not None:
                    sets["priority"] = int(changes.priority)
                if changes.state is not None:
                    sets["state"] = changes.state
                if changes.custom_fields:
                    fields = {**json.loads(current["custom_fields"]), **changes.custom_fields}
                    sets["custom_fields"] = json.dumps(fields)
                if sets:
                    sets["updated"] = _now()
                    assignments = ", ".join(f"{column} = ?" for column in sets)
                    db.execute(
                        f"UPDATE tickets SET {assignments} WHERE id = ?", [*sets.values(), key]
                    )
                    current = _row(db, key, ticket_id)
            return current

        return _ticket(await self._call(change))

    async def add_note(self, ticket_id: str, note: Note) -> Note:
        key = _ticket_key(ticket_id)
        now = _now()

        def insert(db: sqlite3.Connection) -> int:
            with _transaction(db):  # the note and the ticket's new time, or neither
                _row(db, key, ticket_id)
                cursor = db.execute(
                    "INSERT INTO notes (ticket_id, subject, body, created) VALUES (?, ?, ?, ?)",
                    (key, note.subject, note.body, now),
                )
                db.execute("UPDATE tickets SET updated = ? WHERE id = ?", (now, key))
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        note_id = await self._call(insert)
        return Note(
            id=str(note_id),
            subject=note.subject,
            body=note.body,
            created=datetime.fromisoformat(now),
        )

    async def notes(self, ticket_id: str) -> list[Note]:
        key = _ticket_key(ticket_id)

        def read(db: sqlite3.Connection) -> list[sqlite3.Row]:
            _row(db, key, ticket_id)
            return db.execute(
                "SELECT * FROM notes WHERE ticket_id = ? ORDER BY id", (key,)
            ).fetchall()

        rows = await self._call(read)
        return [
            Note(
                id=str(row["id"]),
                subject=row["subject"],
                body=row["body"],
                created=datetime.fromisoformat(row["created"]),
            )
            for row in rows
        ]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": self.params.path}
