"""The run ledger: what every run did (its steps, the changes it made, the classifications it
relied on), kept for ``otai runs`` to answer "what happened to ticket 4711, and why?".

Three parts:

- the records (:class:`RunRecord`, :class:`StepReport`, :class:`TicketEntry`), frozen
  dataclasses built by the runtime after each run;
- :class:`LedgerStore`, the protocol a storage backend implements, and
  :class:`SqliteLedgerStore`, the one that ships (one SQLite file in WAL mode, so that
  ``otai runs`` reads it while ``otai run`` writes it);
- :class:`Ledger`, the writer the runtime hands each finished run to.

Why a thread: the runtime calls :meth:`Ledger.submit` on the event loop after every run, and a
SQLite commit is blocking I/O that can take milliseconds (or seconds, on a busy or full disk).
``submit`` only appends to a bounded queue; one daemon thread owns every write, so no run ever
waits for the disk, and the store needs no asyncio.

Why batches: one transaction per run would cost a sync per run; the writer commits what has
gathered every ``flush_delay`` (or as soon as ``batch`` runs wait), so ten thousand runs a
second cost a few commits a second.

Why the queue is bounded and failures are kept: the ledger is a record, not the work. When a
write fails (disk full, file locked) the runs go on; the writer keeps the unsaved records and
tries again with a growing pause, reports the failure at most once a minute, and writes
everything once the store accepts writes again. Only when more than the bound wait are the
oldest dropped (and counted), so a long outage costs memory up to the bound, never the service.

Retention: at start and then once an hour the writer prunes runs older than ``retention`` and
beyond the newest ``max_runs``, so the file stays the size the operator chose.
"""

from __future__ import annotations

import json
import logging
import marshal
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from open_ticket_ai.core.compiled import CompiledConfig, path_beside
from open_ticket_ai.core.pipes.records import Action, ActionKind, Decision, StepReport
from open_ticket_ai.core.pipes.result import PipeStatus
from open_ticket_ai.core.secrets import SECRETS
from open_ticket_ai.errors import ComponentError, OpenTicketAIError
from open_ticket_ai.runtime.events import RunEnded, RunOutcome

__all__ = [
    "CONSOLE_RUNNER",
    "DEFAULT_LEDGER_PATH",
    "DEFAULT_MAX_RUNS",
    "DEFAULT_RETENTION",
    "MAX_PENDING",
    "SCHEMA_VERSION",
    "DecisionEntry",
    "FailureReports",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "LedgerWriter",
    "RunRecord",
    "SqliteLedgerStore",
    "TicketEntry",
    "ledger_file_of",
    "ledger_path_of",
    "next_run_numbers",
    "open_ledger",
    "record_of",
]

DEFAULT_LEDGER_PATH = "var/otai-ledger.sqlite"
"""Where the ledger lives, relative to the config file's directory, unless configured."""
DEFAULT_RETENTION = 30 * 86400.0
"""Seconds a run is kept: 30 days."""
DEFAULT_MAX_RUNS = 1_000_000
"""Runs kept at most, whatever their age."""
MAX_PENDING = 100_000
"""Records the writer holds at most while the store refuses writes."""
SCHEMA_VERSION = 1
"""The version of the SQLite layout this code reads and writes."""

PRUNE_EVERY = 3600.0
"""Seconds between two prunes (the first runs when the writer starts)."""
REPORT_EVERY = 60.0
"""Seconds between two reports of failing writes."""
RETRY_MAX = 5.0
"""The longest pause between two attempts while writes fail."""

_log = logging.getLogger("open_ticket_ai.ledger")


class LedgerError(OpenTicketAIError):
    """A ledger file cannot be used: it is not a ledger, it is unreadable, or it was written
    by a newer open-ticket-ai. The message names the file."""


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run, as the ledger keeps it.

    Times are POSIX seconds. ``scheduled`` is when the fire was due (None for manual and
    event fires); ``payload_size`` is the size in bytes of the trigger payload as JSON (None
    without a payload)."""

    run_id: str
    runner: str
    trigger: str | None
    payload_size: int | None
    scheduled: float | None
    started: float
    ended: float
    outcome: RunOutcome
    error: str | None
    dry_run: bool
    steps: tuple[StepReport, ...]
    actions: tuple[Action, ...]
    decisions: tuple[Decision, ...]

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass(frozen=True, slots=True)
class TicketEntry:
    """One action or one decision (exactly one of the two is set) on a ticket, with the run
    it belongs to; ``at`` is when that run ended."""

    run_id: str
    runner: str
    at: float
    action: Action | None = None
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    """One classification of a run, with where to find it again (``run_id`` and
    ``position`` among the run's decisions) and whether a person has confirmed or corrected
    the ticket's label since (a later decision of the same model on the same ticket, made in
    the console)."""

    run_id: str
    runner: str
    at: float
    position: int
    decision: Decision
    corrected: bool = False


CONSOLE_RUNNER = "console"
"""The runner name under which the console records the corrections people make."""


# -- the store protocol -------------------------------------------------------------------


class LedgerStore(Protocol):
    """Where the ledger keeps its records. Every method may be called from any one thread
    at a time; failures raise (the :class:`Ledger` keeps records that failed to be written).

    Time ranges are half-open: ``since`` is inclusive, ``until`` exclusive, both compared
    with the run's ``started``. Lists are newest first."""

    def append(self, runs: Sequence[RunRecord]) -> None:
        """Store ``runs`` in one transaction: all of them or none."""
        ...

    def runs(
        self,
        *,
        runner: str | None = None,
        outcome: RunOutcome | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """The newest ``limit`` runs (by start) that match every filter given."""
        ...

    def run(self, run_id: str) -> RunRecord | None:
        """The run with exactly this id, or None. Run ids are meant to be unique; should
        one repeat (a counter started afresh), this is the newest run with it."""
        ...

    def ticket(
        self, ticket_id: str, *, system: str | None = None, limit: int = 200
    ) -> list[TicketEntry]:
        """Every action and decision on the ticket, newest first (within one run, later
        reports first, actions before decisions). With ``system``, actions on other systems
        are left out, and so are decisions whose run changed the ticket only in other
        systems (a decision names no system)."""
        ...

    def counts(self, *, since: float) -> dict[str, dict[RunOutcome, int]]:
        """Per runner, how many runs started at or after ``since`` ended how."""
        ...

    def decisions(
        self, *, below_threshold: bool | None = None, limit: int = 100
    ) -> list[DecisionEntry]:
        """The newest ``limit`` decisions of the runs (not the console's own), newest
        recorded first; with ``below_threshold``, only those that fell below (or not)."""
        ...

    def last_runs(self) -> dict[str, RunRecord]:
        """Each runner's latest run."""
        ...

    def prune(self, *, before: float, keep: int) -> int:
        """Delete the runs that started before ``before`` and those beyond the newest
        ``keep``, with their steps, actions and decisions; return how many runs went."""
        ...

    def close(self) -> None:
        """Release the store; calling it again does nothing."""
        ...


class LedgerWriter(Protocol):
    """What the runtime hands finished runs to: :class:`Ledger` (a thread writing any
    :class:`LedgerStore`) or the service's
    :class:`~open_ticket_ai.runtime.ledger_process.ProcessLedger`. :meth:`submit` is called
    on the event loop's thread and never blocks; :meth:`flush` and :meth:`close` may block
    and are called from other threads (or once the loop is done)."""

    store: Any
    """The store written, which the console and ``otai runs`` read."""
    written: int
    dropped: int
    failures: int

    @property
    def pending(self) -> int: ...

    def start(self) -> None: ...

    def submit(self, record: RunRecord | RunEnded) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...

    def close(self, timeout: float = 5.0) -> None: ...


# -- SQLite -------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ledger_schema (version INTEGER NOT NULL)""",
    """INSERT INTO ledger_schema (version)
        SELECT ? WHERE NOT EXISTS (SELECT 1 FROM ledger_schema)""",
    """CREATE TABLE IF NOT EXISTS runs (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        runner TEXT NOT NULL,
        trigger TEXT,
        payload_size INTEGER,
        scheduled REAL,
        started REAL NOT NULL,
        ended REAL NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        dry_run INTEGER NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS runs_run_id ON runs (run_id)""",
    """CREATE INDEX IF NOT EXISTS runs_runner_started ON runs (runner, started)""",
    # An index on outcomes would cost every write; a status filter reads runs by start
    # time instead. Files of earlier versions may have it: it goes.
    """DROP INDEX IF EXISTS runs_outcome_started""",
    """CREATE INDEX IF NOT EXISTS runs_started ON runs (started)""",
    # The (run, position) keys double as the index ON DELETE CASCADE needs to find children.
    """CREATE TABLE IF NOT EXISTS steps (
        run INTEGER NOT NULL REFERENCES runs (seq) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        path TEXT NOT NULL,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        duration REAL NOT NULL,
        attempts INTEGER NOT NULL,
        message TEXT NOT NULL,
        items TEXT,
        PRIMARY KEY (run, position)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS actions (
        run INTEGER NOT NULL REFERENCES runs (seq) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ticket_id TEXT,
        system TEXT,
        changes TEXT,
        note_id TEXT,
        marker TEXT,
        text TEXT,
        method TEXT,
        url TEXT,
        status INTEGER,
        step TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        PRIMARY KEY (run, position)
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS actions_ticket ON actions (ticket_id)""",
    """CREATE TABLE IF NOT EXISTS decisions (
        run INTEGER NOT NULL REFERENCES runs (seq) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        model TEXT NOT NULL,
        label TEXT NOT NULL,
        confidence REAL NOT NULL,
        top TEXT NOT NULL,
        ticket_id TEXT,
        below_threshold INTEGER NOT NULL,
        used TEXT NOT NULL,
        step TEXT NOT NULL,
        PRIMARY KEY (run, position)
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS decisions_ticket ON decisions (ticket_id)""",
    # The review queue: the newest decisions below their threshold, without reading all.
    """CREATE INDEX IF NOT EXISTS decisions_review ON decisions (below_threshold, run)""",
)

_RUN_COLUMNS = (
    "seq, run_id, runner, trigger, payload_size, scheduled, started, ended, outcome, error, dry_run"
)
_ACTION_COLUMNS = (
    "kind, ticket_id, system, changes, note_id, marker, text, method, url, status, step, dry_run"
)
_DECISION_COLUMNS = "model, label, confidence, top, ticket_id, below_threshold, used, step"
_STEP_COLUMNS = "run, position, path, step_id, status, duration, attempts, message, items"
_INSERT_RUN = f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 11)})"
_INSERT_STEP = f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES ({', '.join('?' * 9)})"
_INSERT_ACTION = (
    f"INSERT INTO actions (run, position, {_ACTION_COLUMNS}) VALUES ({', '.join('?' * 14)})"
)
_INSERT_DECISION = (
    f"INSERT INTO decisions (run, position, {_DECISION_COLUMNS}) VALUES ({', '.join('?' * 10)})"
)
_UNBINDABLE = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError)
"""What a value SQLite cannot take as it is raises: a NaN stored as NULL in a NOT NULL
column, a type sqlite3 cannot bind."""
_CHUNK = 500
"""Ids per ``IN (...)`` query: well below SQLite's limit on bound parameters."""


class SqliteLedgerStore:
    """A :class:`LedgerStore` in one SQLite file (WAL mode, so readers never wait for the
    writer). With ``readonly`` the file must exist and is never changed: that is how
    ``otai runs`` opens the ledger of a running service.

    One connection, usable from any thread, one call at a time (a lock guards it)."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._next_seq: int | None = None
        """The seq of the next run appended (read from the file on the first append)."""
        self._closed = False
        try:
            if readonly:
                if not self.path.is_file():
                    raise LedgerError(f"{self.path}: no ledger file")
                uri = f"{self.path.absolute().as_uri()}?mode=ro"
                self._db = sqlite3.connect(
                    uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.path, timeout=timeout, isolation_level=None, check_same_thread=False
                )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger: {exc}") from exc
        try:
            self._prepare()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if "not a database" in str(exc):
                raise LedgerError(f"{self.path} is not a run ledger ({exc})") from exc
            raise LedgerError(f"{self.path}: cannot open the ledger: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        db = self._db
        db.execute("PRAGMA foreign_keys = ON")
        if not self.readonly:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "ledger_schema" not in tables:
            if tables:
                raise LedgerError(
                    f"{self.path} is not a run ledger: it holds other tables "
                    f"({', '.join(sorted(tables))})"
                )
            if self.readonly:
                raise LedgerError(f"{self.path}: the ledger is empty, no run is recorded yet")
        else:
            row = db.execute("SELECT MAX(version) FROM ledger_schema").fetchone()
            version = row[0] if row else None
            if not isinstance(version, int):
                raise LedgerError(f"{self.path} is not a run ledger: it has no schema version")
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path} was written by a newer open-ticket-ai (ledger schema "
                    f"{version}; this one knows up to {SCHEMA_VERSION}): upgrade it, or point "
                    "orchestrator.ledger.path at another file"
                )
            if self.readonly:
                return
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in (*_SCHEMA, *_batch_schema()):
                if "?" in statement:
                    db.execute(statement, (SCHEMA_VERSION,))
                else:
                    db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- writing --------------------------------------------------------------------------

    def append(self, runs: Sequence[RunRecord]) -> None:
        self.append_bundles([bundle_of(record) for record in runs])

    def append_bundles(self, bundles: Sequence[Bundle], *, skip_written: bool = False) -> None:
        """Store runs given as :func:`bundle_of` made them, in one transaction: one
        ``executemany`` per table, the cheapest way in for a thread that has the interpreter
        to itself (the ledger's writer process; see :meth:`append_encoded` for a thread that
        shares it with an event loop). A value SQLite cannot hold as it is (a NaN, which it
        would store as NULL, a Decimal) sends the batch the way of :meth:`append_encoded`,
        whose encoder makes such values plain.

        With ``skip_written``, a run whose id the file already holds is left out: runs sent
        again after a writer died, which may have committed them before it could say so."""
        with self._lock:
            db = self._db
            if skip_written:
                held = db.execute
                bundles = [
                    b
                    for b in bundles
                    if held("SELECT 1 FROM runs WHERE run_id = ?", (b[0][0],)).fetchone() is None
                ]
            if not bundles:
                return
            first = self._first_seq()
            runs: list[tuple[Any, ...]] = []
            steps: list[tuple[Any, ...]] = []
            actions: list[tuple[Any, ...]] = []
            decisions: list[tuple[Any, ...]] = []
            for seq, (run, run_steps, run_actions, run_decisions) in enumerate(bundles, first):
                runs.append((seq, *run))
                for position, step in enumerate(run_steps):
                    items = step[6]
                    steps.append(
                        (seq, position, *step[:6], None if items is None else _ENCODE(items))
                    )
                for position, action in enumerate(run_actions):
                    actions.append((seq, position, *action))
                for position, decision in enumerate(run_decisions):
                    decisions.append((seq, position, *decision))
            db.execute("BEGIN")
            try:
                db.executemany(_INSERT_RUN, runs)
                db.executemany(_INSERT_STEP, steps)
                if actions:
                    db.executemany(_INSERT_ACTION, actions)
                if decisions:
                    db.executemany(_INSERT_DECISION, decisions)
            except BaseException as exc:
                db.execute("ROLLBACK")
                self._next_seq = None  # another writer may have taken the numbers: ask again
                if not isinstance(exc, _UNBINDABLE):
                    raise
            else:
                db.execute("COMMIT")
                self._next_seq = first + len(bundles)
                return
        self.append_encoded([encode_bundle(bundle) for bundle in bundles])

    def _first_seq(self) -> int:
        """The seq the next run appended takes (read from the file the first time)."""
        if self._next_seq is None:
            (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM runs").fetchone()
            self._next_seq = int(last) + 1
        return self._next_seq

    def append_encoded(self, texts: Sequence[str]) -> None:
        """Store runs given as :func:`encode_bundle` wrote them, in one transaction."""
        if not texts:
            return
        with self._lock:
            db = self._db
            first = self._first_seq()
            # ONE statement for the whole batch, atomic by itself: the view's trigger inserts
            # every table's rows from the JSON document inside SQLite, which runs without the
            # GIL. A statement per row (or per table) would wait for the GIL at each one while
            # the event loop keeps it busy, and a batch would take seconds, not milliseconds.
            # The runs come encoded already: the writer holds the GIL for one join only.
            try:
                db.execute(
                    "INSERT INTO ledger_batch (first, doc) VALUES (?, ?)",
                    (first, "[" + ",".join(texts) + "]"),
                )
            except BaseException:
                self._next_seq = None  # another writer may have taken the numbers: ask again
                raise
            self._next_seq = first + len(texts)

    def prune(self, *, before: float, keep: int) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                old = db.execute("DELETE FROM runs WHERE started < ?", (before,)).rowcount
                extra = db.execute(
                    "DELETE FROM runs WHERE seq IN (SELECT seq FROM runs "
                    "ORDER BY started DESC, seq DESC LIMIT -1 OFFSET ?)",
                    (max(keep, 0),),
                ).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return old + extra

    # -- reading --------------------------------------------------------------------------

    def runs(
        self,
        *,
        runner: str | None = None,
        outcome: RunOutcome | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        if limit <= 0:
            return []
        clauses: list[str] = []
        args: list[Any] = []
        if runner is not None:
            clauses.append("runner = ?")
            args.append(runner)
        if outcome is not None:
            clauses.append("outcome = ?")
            args.append(RunOutcome(outcome).value)
        if since is not None:
            clauses.append("started >= ?")
            args.append(since)
        if until is not None:
            clauses.append("started < ?")
            args.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY started DESC, seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            return self._records(rows)

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ? "
                "ORDER BY started DESC, seq DESC LIMIT 1",
                (run_id,),
            ).fetchall()
            found = self._records(rows)
        return found[0] if found else None

    def ticket(
        self, ticket_id: str, *, system: str | None = None, limit: int = 200
    ) -> list[TicketEntry]:
        if limit <= 0:
            return []
        action_filter = "" if system is None else "AND a.system = ?"
        # A decision names no system: it belongs to `system` unless its run changed the
        # ticket in other systems only.
        decision_filter = (
            ""
            if system is None
            else "AND (EXISTS (SELECT 1 FROM actions x WHERE x.run = d.run "
            "AND x.ticket_id = d.ticket_id AND x.system = ?) "
            "OR NOT EXISTS (SELECT 1 FROM actions x WHERE x.run = d.run "
            "AND x.ticket_id = d.ticket_id AND x.system IS NOT NULL))"
        )
        with self._lock:
            actions = self._db.execute(
                f"SELECT r.seq, r.run_id, r.runner, r.ended, a.position, {_prefixed('a')} "
                "FROM actions a JOIN runs r ON r.seq = a.run "
                f"WHERE a.ticket_id = ? {action_filter} "
                "ORDER BY r.ended DESC, r.seq DESC, a.position DESC LIMIT ?",
                (ticket_id, *([system] if system is not None else []), limit),
            ).fetchall()
            decisions = self._db.execute(
                "SELECT r.seq, r.run_id, r.runner, r.ended, d.position, "
                f"{_prefixed('d', _DECISION_COLUMNS)} "
                "FROM decisions d JOIN runs r ON r.seq = d.run "
                f"WHERE d.ticket_id = ? {decision_filter} "
                "ORDER BY r.ended DESC, r.seq DESC, d.position DESC LIMIT ?",
                (ticket_id, *([system] if system is not None else []), limit),
            ).fetchall()
        keyed: list[tuple[tuple[float, int, int, int], TicketEntry]] = []
        for row in actions:
            entry = TicketEntry(row[1], row[2], row[3], action=_action(row[5:]))
            keyed.append(((row[3], row[0], 1, row[4]), entry))
        for row in decisions:
            entry = TicketEntry(row[1], row[2], row[3], decision=_decision(row[5:]))
            keyed.append(((row[3], row[0], 0, row[4]), entry))
        keyed.sort(key=lambda pair: pair[0], reverse=True)
        return [entry for _, entry in keyed[:limit]]

    def counts(self, *, since: float) -> dict[str, dict[RunOutcome, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT runner, outcome, COUNT(*) FROM runs WHERE started >= ? "
                "GROUP BY runner, outcome ORDER BY runner",
                (since,),
            ).fetchall()
        found: dict[str, dict[RunOutcome, int]] = {}
        for runner, outcome, count in rows:
            found.setdefault(runner, {})[RunOutcome(outcome)] = count
        return found

    def decisions(
        self, *, below_threshold: bool | None = None, limit: int = 100
    ) -> list[DecisionEntry]:
        if limit <= 0:
            return []
        where = "r.runner != ?"
        args: list[Any] = [CONSOLE_RUNNER]
        if below_threshold is not None:
            where += " AND d.below_threshold = ?"
            args.append(int(below_threshold))
        with self._lock:
            rows = self._db.execute(
                "SELECT r.run_id, r.runner, r.ended, d.position, "
                f"{_prefixed('d', _DECISION_COLUMNS)}, "
                "EXISTS (SELECT 1 FROM decisions c JOIN runs cr ON cr.seq = c.run "
                "WHERE cr.runner = ? AND c.ticket_id = d.ticket_id AND c.model = d.model "
                "AND cr.seq > r.seq) "
                f"FROM decisions d JOIN runs r ON r.seq = d.run WHERE {where} "
                "ORDER BY d.run DESC, d.position DESC LIMIT ?",
                (CONSOLE_RUNNER, *args, limit),
            ).fetchall()
        return [
            DecisionEntry(row[0], row[1], row[2], row[3], _decision(row[4:12]), bool(row[12]))
            for row in rows
        ]

    def last_runs(self) -> dict[str, RunRecord]:
        with self._lock:
            # A loose index scan: one index seek per runner instead of reading every run.
            rows = self._db.execute(
                """
                WITH RECURSIVE names (runner) AS (
                    SELECT MIN(runner) FROM runs
                    UNION ALL
                    SELECT (SELECT MIN(runner) FROM runs WHERE runner > names.runner)
                    FROM names WHERE names.runner IS NOT NULL
                )
                SELECT (SELECT seq FROM runs WHERE runs.runner = names.runner
                        ORDER BY started DESC, seq DESC LIMIT 1)
                FROM names WHERE names.runner IS NOT NULL
                """
            ).fetchall()
            seqs = [row[0] for row in rows]
            runs: list[tuple[Any, ...]] = []
            for chunk in _chunks(seqs):
                runs.extend(
                    self._db.execute(
                        f"SELECT {_RUN_COLUMNS} FROM runs WHERE seq IN ({_marks(chunk)})", chunk
                    ).fetchall()
                )
            records = self._records(runs)
        return {record.runner: record for record in sorted(records, key=lambda r: r.runner)}

    def _records(self, rows: Sequence[tuple[Any, ...]]) -> list[RunRecord]:
        """The runs of ``rows`` (``_RUN_COLUMNS``), in their order, with their children."""
        seqs = [row[0] for row in rows]
        steps: dict[int, list[StepReport]] = {}
        actions: dict[int, list[Action]] = {}
        decisions: dict[int, list[Decision]] = {}
        for chunk in _chunks(seqs):
            marks = _marks(chunk)
            for row in self._db.execute(
                "SELECT run, path, step_id, status, duration, attempts, message, items "
                f"FROM steps WHERE run IN ({marks}) ORDER BY run, position",
                chunk,
            ):
                items = tuple(PipeStatus(i) for i in json.loads(row[7])) if row[7] else ()
                steps.setdefault(row[0], []).append(
                    StepReport(row[1], row[2], PipeStatus(row[3]), row[4], row[5], row[6], items)
                )
            for row in self._db.execute(
                f"SELECT run, {_ACTION_COLUMNS} FROM actions WHERE run IN ({marks}) "
                "ORDER BY run, position",
                chunk,
            ):
                actions.setdefault(row[0], []).append(_action(row[1:]))
            for row in self._db.execute(
                f"SELECT run, {_DECISION_COLUMNS} FROM decisions WHERE run IN ({marks}) "
                "ORDER BY run, position",
                chunk,
            ):
                decisions.setdefault(row[0], []).append(_decision(row[1:]))
        return [
            RunRecord(
                run_id=row[1],
                runner=row[2],
                trigger=row[3],
                payload_size=row[4],
                scheduled=row[5],
                started=row[6],
                ended=row[7],
                outcome=RunOutcome(row[8]),
                error=row[9],
                dry_run=bool(row[10]),
                steps=tuple(steps.get(row[0], ())),
                actions=tuple(actions.get(row[0], ())),
                decisions=tuple(decisions.get(row[0], ())),
            )
            for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


Bundle = tuple[Any, ...]
"""A run as plain values only, ready for JSON: ``(run, steps, actions, decisions)``, each a
tuple of rows, each row a tuple of numbers, strings and None (:func:`encode_bundle` writes it
as the text a batch is made of)."""


def bundle_of(record: RunRecord | RunEnded) -> Bundle:
    """``record`` (or the event of the run: the same fields) as a :data:`Bundle` (enums go
    in as their values)."""
    # Packed on the event loop for every run: an enum's value is read as ``_value_`` (its
    # ``value`` property costs a Python call), and the rows are list displays.
    trigger = record.trigger
    error = record.error
    run = (
        record.run_id,
        record.runner,
        # An event's trigger is a TriggerRef (a str subclass carrying the payload), which
        # marshal refuses: the plain text, or marshalled() falls back to its slow path.
        trigger if trigger is None else str(trigger),
        record.payload_size,
        record.scheduled,
        record.started,
        record.ended,
        getattr(record.outcome, "_value_", record.outcome),
        SECRETS.redact(error) if error else error,
        int(record.dry_run),
    )
    # Plain tuples of strings and numbers (a StepReport holds an enum, which the garbage
    # collector tracks): a bundle waiting for the writer is then never scanned.
    redact = SECRETS.redact
    steps = tuple(
        [
            (
                step.path,
                step.step_id,
                getattr(step.status, "_value_", step.status),
                step.duration,
                step.attempts,
                redact(step.message) if step.message else step.message,
                tuple([str(i) for i in step.items]) if step.items else None,
            )
            for step in record.steps
        ]
    )
    actions = (
        ()
        if not record.actions
        else tuple(
            (
                a.kind.value,
                a.ticket_id,
                a.system,
                _to_json({str(k): [b, f] for k, (b, f) in a.changes.items()})
                if a.changes
                else None,
                a.note_id,
                a.marker,
                a.text,
                a.method,
                a.url,
                a.status,
                a.step,
                int(a.dry_run),
            )
            for a in record.actions
        )
    )
    decisions = (
        ()
        if not record.decisions
        else tuple(
            (
                d.model,
                d.label,
                d.confidence,
                _to_json([[str(label), float(score)] for label, score in d.top]),
                d.ticket_id,
                int(d.below_threshold),
                _to_json(d.used),
                d.step,
            )
            for d in record.decisions
        )
    )
    return (run, steps, actions, decisions)


def _batch_schema() -> tuple[str, ...]:
    """The view a batch is inserted into, and its trigger: ``doc`` is a JSON list with one
    :func:`encode_bundle` text per run, ``[run, steps, actions, decisions]``; the n-th run
    gets seq ``first + n``. Every row is parsed once, small."""

    def picks(source: str, count: int) -> str:
        return ", ".join(f"json_extract({source}, '$[{n}]')" for n in range(count))

    runs = [c.strip() for c in _RUN_COLUMNS.split(",")][1:]  # seq comes from `first`
    children = (
        ("steps", [c.strip() for c in _STEP_COLUMNS.split(",")][2:], 1),
        ("actions", [c.strip() for c in _ACTION_COLUMNS.split(",")], 2),
        ("decisions", [c.strip() for c in _DECISION_COLUMNS.split(",")], 3),
    )
    inserts = [
        f"INSERT INTO runs (seq, {', '.join(runs)}) "
        f"SELECT NEW.first + b.key, {picks('r.value', len(runs))} "
        "FROM json_each(NEW.doc) AS b, json_each(b.value) AS r WHERE r.key = 0;"
    ]
    for table, columns, index in children:
        inserts.append(
            f"INSERT INTO {table} (run, position, {', '.join(columns)}) "
            f"SELECT NEW.first + b.key, c.key, {picks('c.value', len(columns))} "
            f"FROM json_each(NEW.doc) AS b, json_each(b.value, '$[{index}]') AS c;"
        )
    return (
        "DROP TRIGGER IF EXISTS ledger_batch_insert",
        "DROP VIEW IF EXISTS ledger_batch",
        "CREATE VIEW ledger_batch AS SELECT NULL AS first, NULL AS doc",
        "CREATE TRIGGER ledger_batch_insert INSTEAD OF INSERT ON ledger_batch "
        "BEGIN " + " ".join(inserts) + " END",
    )


def marshalled(record: RunRecord | RunEnded) -> bytes:
    """``record`` as :mod:`marshal` bytes of its :func:`bundle_of` (what a
    :class:`~open_ticket_ai.runtime.ledger_process.ProcessLedgerStore` takes: about a
    microsecond, a third of the JSON). A value marshal cannot hold (a numpy number) goes
    through :func:`encode_bundle`'s plain values first."""
    bundle = bundle_of(record)
    try:
        return marshal.dumps(bundle)
    except ValueError:
        return marshal.dumps(json.loads(encode_bundle(bundle)))


def encode_bundle(bundle: Bundle) -> str:
    """``bundle`` as the JSON text a batch is made of (see :func:`_batch_schema`).

    A value JSON cannot hold is made plain rather than failing the batch on every retry:
    a non-finite float becomes 0.0, a numpy number its float or int, anything else its
    text."""
    try:
        return _ENCODE(bundle)
    except ValueError:
        return _ENCODE(_finite_all(bundle))


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # a numpy scalar: its Python number
    if callable(item):
        try:
            value = item()
        except (TypeError, ValueError):
            pass
        else:
            return _finite(value) if isinstance(value, int | float | str) else str(value)
    if hasattr(value, "__index__"):
        return int(value)
    if hasattr(value, "__float__"):
        return _finite(float(value))
    return str(value)


def _finite_all(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_finite_all(v) for v in value]
    return _finite(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    return value


_ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_plain).encode


def _to_json(value: Any) -> str:
    # default=str: a value JSON cannot hold (a datetime, a Decimal) is kept as its text
    # rather than failing the whole batch.
    return json.dumps(value, default=str)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: int | None) -> int | None:
    return None if value is None else int(value)


def _real(value: float | None) -> float | None:
    return None if value is None else float(value)


def _action(row: Sequence[Any]) -> Action:
    """An Action from the ``_ACTION_COLUMNS`` of a row."""
    changes = json.loads(row[3]) if row[3] else {}
    return Action(
        kind=ActionKind(row[0]),
        ticket_id=row[1],
        system=row[2],
        changes={name: (pair[0], pair[1]) for name, pair in changes.items()},
        note_id=row[4],
        marker=row[5],
        text=row[6],
        method=row[7],
        url=row[8],
        status=row[9],
        step=row[10],
        dry_run=bool(row[11]),
    )


def _decision(row: Sequence[Any]) -> Decision:
    """A Decision from the ``_DECISION_COLUMNS`` of a row."""
    return Decision(
        model=row[0],
        label=row[1],
        confidence=row[2],
        top=tuple((str(label), float(score)) for label, score in json.loads(row[3])),
        ticket_id=row[4],
        below_threshold=bool(row[5]),
        used=json.loads(row[6]),
        step=row[7],
    )


def _prefixed(alias: str, columns: str = _ACTION_COLUMNS) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in columns.split(","))


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def record_of(event: RunEnded) -> RunRecord:
    """The ledger's record of a run that ended."""
    return RunRecord(
        run_id=event.run_id,
        runner=event.runner,
        trigger=str(event.trigger) if event.trigger is not None else None,
        payload_size=event.payload_size,
        scheduled=event.scheduled,
        started=event.started,
        ended=event.ended,
        outcome=event.outcome,
        error=event.error,
        dry_run=event.dry_run,
        steps=tuple(event.steps),
        actions=tuple(event.actions),
        decisions=tuple(event.decisions),
    )


def ledger_file_of(compiled: CompiledConfig) -> Path | None:
    """The ledger file of a config: None when ``ledger: false``, or when the config is text
    with no file (and so no directory) and no ``ledger.path``."""
    settings = compiled.loaded.config.orchestrator.ledger
    if not settings.enabled:
        return None
    return compiled.file_beside(settings.path, DEFAULT_LEDGER_PATH)


def open_ledger(
    compiled: CompiledConfig, on_error: Callable[[BaseException], None] | None = None
) -> LedgerWriter | None:
    """The ledger writer of a config (not started): a
    :class:`~open_ticket_ai.runtime.ledger_process.ProcessLedger`, or None when
    ``ledger: false`` or when the config is text with no file (and so no directory) and no
    ``ledger.path``.

    Raises ComponentError when the file cannot be a ledger (another kind of file, a newer
    schema, a directory that cannot be created)."""
    path = ledger_file_of(compiled)
    if path is None:
        return None
    from open_ticket_ai.runtime.ledger_process import ProcessLedger, ProcessLedgerStore

    settings = compiled.loaded.config.orchestrator.ledger
    try:
        store = ProcessLedgerStore(path)
    except LedgerError as exc:
        raise ComponentError(
            f"orchestrator.ledger: {exc}; give orchestrator.ledger.path another file, or "
            "set `ledger: false` to run without a ledger"
        ) from exc
    return ProcessLedger(
        store, retention=settings.retention, max_runs=settings.max_runs, on_error=on_error
    )


def next_run_numbers(store: LedgerStore) -> dict[str, int]:
    """Per runner, the number its next run id takes (``RUNNER-N``), so that ids go on from
    the last recorded run and stay unique across restarts."""
    numbers: dict[str, int] = {}
    for runner, record in store.last_runs().items():
        _, _, suffix = record.run_id.rpartition("-")
        if suffix.isdigit():
            numbers[runner] = int(suffix) + 1
    return numbers


def ledger_path_of(config_file: Path, configured: str | None) -> Path:
    """The ledger file of the config at ``config_file``: ``configured`` (from
    ``orchestrator.ledger.path``), else :data:`DEFAULT_LEDGER_PATH`; a relative path is
    relative to the config file's directory, so the service and ``otai runs`` find the same
    file from any working directory."""
    return path_beside(config_file, configured, DEFAULT_LEDGER_PATH)


# -- the writer ---------------------------------------------------------------------------


class Ledger:
    """Writes finished runs to a :class:`LedgerStore` from one background thread.

    :meth:`submit` never blocks and never raises; records wait in a queue of at most
    ``capacity`` (the oldest are dropped beyond it, counted in :attr:`dropped`) and are
    written in batches. A failed write keeps its records for the next attempt and calls
    ``on_error`` at most once a minute (by ``clock``). :meth:`close` writes what is pending,
    then closes the store."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        retention: float = DEFAULT_RETENTION,
        max_runs: int = DEFAULT_MAX_RUNS,
        flush_delay: float = 0.2,
        batch: int = 500,
        capacity: int = MAX_PENDING,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch < 1 or capacity < 1:
            raise ValueError("batch and capacity must be at least 1")
        self.store = store
        self.retention = retention
        self.max_runs = max_runs
        self.flush_delay = flush_delay
        self.batch = batch
        self.capacity = capacity
        self._clock = clock
        self._reports = FailureReports(clock, on_error)
        self._queue: deque[RunRecord | str | bytes] = deque()
        self._inflight = 0
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._waiting_since = 0.0
        """Monotonic time the oldest queued record arrived (or was put back)."""
        self._failed_at = 0.0
        self._urgent = False
        """A flush or close waits: write without the usual delay."""
        self._closing = False
        self._closed = False
        self._deadline = math.inf
        """Monotonic time after which a closing writer gives up on what is left."""
        self._submitted = 0
        self.written = 0
        """Records written to the store."""
        self.dropped = 0
        """Records lost: over the bound while the store failed, or submitted after close."""
        self.failures = 0
        """Store calls (writes and prunes) that raised."""

    @property
    def _form(self) -> str:
        """How the store takes runs (asked each time: the store may be replaced):
        ``marshal`` (:class:`~open_ticket_ai.runtime.ledger_process.ProcessLedgerStore`),
        ``json`` (:func:`encode_bundle` texts, :class:`SqliteLedgerStore`) or ``records``."""
        if callable(getattr(self.store, "append_marshalled", None)):
            return "marshal"
        if callable(getattr(self.store, "append_encoded", None)):
            return "json"
        return "records"

    @property
    def pending(self) -> int:
        """Records submitted and not yet written (nor dropped)."""
        return len(self._queue) + self._inflight

    # -- the runtime's side ---------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (once; later calls do nothing)."""
        with self._cond:
            if self._thread is not None or self._closing:
                return
            self._thread = threading.Thread(target=self._run, name="otai-ledger", daemon=True)
            self._thread.start()

    def submit(self, record: RunRecord | RunEnded) -> None:
        """Queue ``record`` (or the event of a run that ended) for writing. O(1); never
        blocks on I/O and never raises. The run waits in the form its store takes (see
        :attr:`_form`), made here so that the writer thread needs the GIL for hardly
        anything (and bytes or a text are nothing for the garbage collector to look at):
        :func:`marshalled` bytes for the service's
        :class:`~open_ticket_ai.runtime.ledger_process.ProcessLedgerStore`, its JSON text
        for a :class:`SqliteLedgerStore`, else a :class:`RunRecord`."""
        item: RunRecord | str | bytes
        try:
            form = self._form
            if form == "marshal":
                item = marshalled(record)
            elif form == "json":
                item = encode_bundle(bundle_of(record))
            else:
                item = record if isinstance(record, RunRecord) else record_of(record)
        except Exception:  # a plugin's odd value: stored as the record says it
            item = record if isinstance(record, RunRecord) else record_of(record)
        with self._cond:
            self._submitted += 1
            if self._closed:
                self.dropped += 1
                return
            queue = self._queue
            if not queue:
                self._waiting_since = time.monotonic()
            elif len(queue) >= self.capacity:
                queue.popleft()
                self.dropped += 1
            queue.append(item)
            # Wake the writer only when there is something new for it to decide.
            if len(queue) == 1 or len(queue) == self.batch:
                self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write what is pending now, without the usual delay; True once as many records as
        were submitted before the call are written or dropped, False when an attempt fails
        or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            failures = self.failures
            running = self._thread is not None and self._thread.is_alive()
            if running:
                if self.written + self.dropped < target:
                    self._urgent = True
                    self._cond.notify_all()
                while self.written + self.dropped < target and self.failures == failures:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return self.written + self.dropped >= target
        self._write_here(deadline)
        return self.written + self.dropped >= target

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (for ``timeout`` seconds at most), stop the writer and close
        the store. Records submitted later are dropped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = deadline
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        else:
            self._write_here(deadline)
        with self._cond:
            self._closed = True
        if thread is not None and thread.is_alive():
            return  # stuck in the store: it is left to the process exit
        try:
            self.store.close()
        except Exception as exc:
            self._report(exc)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_prune = time.monotonic()
        pause = 0.0  # > 0 while writes fail: the wait before the next attempt
        while True:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + (PRUNE_EVERY if self._prune() else REPORT_EVERY)
            records = self._next_batch(next_prune, pause)
            if records is None:
                return
            if not records:
                continue  # time to prune
            if self._write(records):
                pause = 0.0
            else:
                pause = min(max(pause * 2, self.flush_delay, 0.01), RETRY_MAX)

    def _next_batch(self, next_prune: float, pause: float) -> list[RunRecord | str | bytes] | None:
        """Wait until a batch is due and take it; [] when it is time to prune instead, None
        when closing leaves nothing (more) to do."""
        with self._cond:
            while True:
                now = time.monotonic()
                queue = self._queue
                if self._closing and (not queue or now >= self._deadline):
                    return None
                wake = next_prune
                if queue:
                    if pause:
                        # While failing, neither a full batch nor a flush retries sooner
                        # than the pause, except that a flush may try once more at once.
                        due = now if self._urgent else self._failed_at + pause
                    elif self._urgent or self._closing or len(queue) >= self.batch:
                        due = now
                    else:
                        due = self._waiting_since + self.flush_delay
                    if due <= now:
                        count = min(self.batch, len(queue))
                        records = [queue.popleft() for _ in range(count)]
                        self._inflight = count
                        self._waiting_since = now
                        return records
                    wake = min(wake, due)
                if self._closing:
                    wake = min(wake, self._deadline)
                if wake <= now:
                    return []
                self._cond.wait(wake - now)

    def _write(self, records: list[RunRecord | str | bytes]) -> bool:
        try:
            form = self._form
            if form == "marshal":
                blobs = [r if isinstance(r, bytes) else marshalled(r) for r in records]  # type: ignore[arg-type]
                self.store.append_marshalled(blobs)  # type: ignore[attr-defined]
            elif form == "json":
                texts = [r if isinstance(r, str) else encode_bundle(bundle_of(r)) for r in records]  # type: ignore[arg-type]
                self.store.append_encoded(texts)  # type: ignore[attr-defined]
            else:
                self.store.append(records)  # type: ignore[arg-type]
        except Exception as exc:
            # Reported before the records go back, so that a flush() that sees the failure
            # sees it reported too.
            self._report(exc)
            with self._cond:
                self.failures += 1
                self._failed_at = time.monotonic()
                self._urgent = False
                self._inflight = 0
                queue = self._queue
                queue.extendleft(reversed(records))
                while len(queue) > self.capacity:
                    queue.popleft()
                    self.dropped += 1
                self._cond.notify_all()
            return False
        with self._cond:
            self.written += len(records)
            self._inflight = 0
            if not self._queue:
                self._urgent = False
            self._cond.notify_all()
        return True

    def _write_here(self, deadline: float) -> None:
        """Without a writer thread: write what is pending in the calling thread, until it is
        written, a write fails, or ``deadline``."""
        while time.monotonic() < deadline:
            with self._cond:
                if self._thread is not None and self._thread.is_alive():
                    return
                count = min(self.batch, len(self._queue))
                if not count:
                    return
                records = [self._queue.popleft() for _ in range(count)]
                self._inflight = count
            if not self._write(records):
                return

    def _prune(self) -> bool:
        try:
            self.store.prune(before=self._clock() - self.retention, keep=self.max_runs)
        except Exception as exc:
            self._report(exc)
            with self._cond:
                self.failures += 1
                self._cond.notify_all()
            return False
        return True

    def _report(self, exc: BaseException) -> None:
        self._reports.report(exc, self.pending)


class FailureReports:
    """Tells ``on_error`` (else the log) about a writer's failures, once per
    :data:`REPORT_EVERY` by ``clock``: a full disk fails every attempt, and one message a
    minute says as much as a thousand."""

    def __init__(
        self, clock: Callable[[], float], on_error: Callable[[BaseException], None] | None
    ) -> None:
        self._clock = clock
        self._on_error = on_error
        self._reported_at: float | None = None

    def report(self, exc: BaseException, pending: int) -> None:
        """Report ``exc`` (with ``pending``, the runs waiting) unless one was this minute."""
        now = self._clock()
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY:
            return
        self._reported_at = now
        try:
            if self._on_error is not None:
                self._on_error(exc)
            else:
                _log.error(
                    "the run ledger cannot be written (%s); %d runs wait, runs go on",
                    exc,
                    pending,
                )
        except Exception:  # a failing reporter must not stop the writer
            _log.exception("the ledger's on_error callback failed")
