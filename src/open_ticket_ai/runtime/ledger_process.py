"""The run ledger's SQLite file written by a process of its own, fed by the event loop.

Why a process: turning runs into rows and SQLite's work on them cost tens of microseconds a
run, and in this process they would compete with the event loop for the interpreter (one
thread runs Python at a time). The child does that work on another core.

Why no thread: a thread of this process that needs the interpreter while the event loop is
busy waits for a turn it seldom gets: the loop lets go of the interpreter at every ``select``
and takes it back before the waiting thread has woken, and each of those turns wakes the
thread again. At 16,000 runs a second that convoy cost the loop more than the ledger's own
work. So the loop hands the runs over itself: :class:`ProcessLedger` packs each run with
:func:`~open_ticket_ai.runtime.ledger.marshalled` as it ends (about two microseconds; bytes,
which the garbage collector never looks at) and, every :data:`CHUNK` runs or
``flush_delay`` after the first one waiting, writes them to the child's pipe in one frame,
without blocking. The child commits what each read brings in one transaction and says how
many runs it wrote; the loop reads those answers whenever it writes, and on a timer while
answers are due. Nothing in this process waits for the disk.

The parent keeps every run until the child has said it is written. A batch the child could
not commit (a full disk, a file another writer locks) comes back and is sent again after a
growing pause; a child that died is replaced and given again what it had not confirmed, as
a replay in which runs the file already holds are left out (it may have committed them
before it could say so). Failures are reported at most once a minute; runs go on.

:class:`ProcessLedgerStore` is the parent's side of the file and of the pipes: a store like
:class:`~open_ticket_ai.runtime.ledger.SqliteLedgerStore` (it creates or checks the file the
same way, and reads go to the file directly) whose writes the child makes, either one call
at a time (``append``, ``prune``: the store protocol) or streamed by one
:class:`ProcessLedger`, never both at once. The child starts with the first write and again
after it died; it ignores the terminal's signals and ends when its pipe closes, so the
parent's end, however abrupt, ends it after the batch in hand.

Frames, both ways: one command byte, a 4-byte length, a :mod:`marshal` payload. To the
child: ``A`` (runs: a list of :func:`~open_ticket_ai.runtime.ledger.marshalled` runs),
``R`` (the same, sent again after a writer died), ``P`` (prune: before, keep). From it, in
the order of what they answer: ``K`` (a count of runs written), ``E`` (a count of runs not
written, and why), ``p`` (a count of runs pruned), ``e`` (why a prune failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from open_ticket_ai.runtime.events import RunEnded
from open_ticket_ai.runtime.ledger import (
    DEFAULT_MAX_RUNS,
    DEFAULT_RETENTION,
    MAX_PENDING,
    PRUNE_EVERY,
    REPORT_EVERY,
    RETRY_MAX,
    FailureReports,
    LedgerError,
    RunRecord,
    SqliteLedgerStore,
    marshalled,
)

__all__ = ["CHUNK", "ProcessLedger", "ProcessLedgerStore", "main"]

_HEAD = struct.Struct(">cI")
APPEND, REPLAY, PRUNE = b"A", b"R", b"P"
DONE, FAILED, PRUNED, PRUNE_FAILED = b"K", b"E", b"p", b"e"
STOP_TIMEOUT = 5.0
"""Seconds the child may take to end once its pipe is closed, before it is killed."""
CHUNK = 1000
"""Runs a :class:`ProcessLedger` gathers before it writes them to the child."""
PIPE_SIZE = 1 << 20
"""Bytes the pipe to the child holds (asked of the kernel; a thousand runs fit)."""
_READ = 1 << 20

_log = logging.getLogger("open_ticket_ai.ledger")


def _frame(command: bytes, payload: Any) -> bytes:
    data = marshal.dumps(payload)
    return _HEAD.pack(command, len(data)) + data


def _frames(inbox: bytearray) -> list[tuple[bytes, Any]]:
    """The complete frames at the start of ``inbox``, taken out of it."""
    found: list[tuple[bytes, Any]] = []
    position, size = 0, len(inbox)
    while size - position >= _HEAD.size:
        command, length = _HEAD.unpack_from(inbox, position)
        end = position + _HEAD.size + length
        if end > size:
            break
        found.append((command, marshal.loads(bytes(inbox[position + _HEAD.size : end]))))
        position = end
    del inbox[:position]
    return found


class ProcessLedgerStore(SqliteLedgerStore):
    """A ledger file whose writes a child process makes (see the module). Reading methods
    read the file here, as any reader does; call them from one thread at a time."""

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        super().__init__(path, timeout=timeout)  # creates or checks the file, as ever
        self._timeout = timeout
        self._child: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._inbox = bytearray()
        self._child_lock = threading.Lock()

    @property
    def writer_pid(self) -> int | None:
        """The child's process id while it runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    # -- one call at a time ---------------------------------------------------------------

    def append(self, runs: Sequence[RunRecord]) -> None:
        self.append_marshalled([marshalled(record) for record in runs])

    def append_marshalled(self, blobs: Sequence[bytes]) -> None:
        """Store runs given as :func:`~open_ticket_ai.runtime.ledger.marshalled` made them,
        in one transaction."""
        if blobs:
            self._ask(APPEND, list(blobs))

    def prune(self, *, before: float, keep: int) -> int:
        return int(self._ask(PRUNE, (before, keep)))

    def _ask(self, command: bytes, payload: Any) -> Any:
        with self._child_lock:
            data = memoryview(_frame(command, payload))
            while data:
                data = data[self.write(data) :]
                if data:
                    self.wait(None, writing=True)
            while True:
                for kind, value in self.read():
                    if kind in (DONE, PRUNED):
                        return value
                    error = value[1] if kind == FAILED else value
                    raise LedgerError(f"{self.path}: {error}")
                self.wait(None)

    # -- the pipes, for ProcessLedger and the calls above ----------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the pipe to the child takes of ``data`` now (starting the child when
        none runs); the bytes written. Raises LedgerError when the child has ended."""
        child = self._running()
        assert child.stdin is not None
        try:
            return os.write(child.stdin.fileno(), data)
        except BlockingIOError:
            return 0
        except OSError:
            raise LedgerError(f"{self.path}: {self._died()}") from None

    def read(self) -> list[tuple[bytes, Any]]:
        """The child's answers that have arrived, without waiting. Raises LedgerError when
        the child has ended."""
        child = self._child
        if child is None:
            return []
        assert child.stdout is not None
        try:
            data = os.read(child.stdout.fileno(), _READ)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            raise LedgerError(f"{self.path}: {self._died()}")
        self._inbox += data
        return _frames(self._inbox)

    def wait(self, timeout: float | None, *, writing: bool = False) -> None:
        """Wait up to ``timeout`` seconds (None: as long as it takes) for an answer, or with
        ``writing`` for room in the pipe to the child."""
        child = self._child
        if child is None or child.stdout is None or child.stdin is None:
            time.sleep(0.01 if timeout is None else min(timeout, 0.01))
            return
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the caller sees it
            select.select(
                [child.stdout.fileno()], [child.stdin.fileno()] if writing else [], [], timeout
            )

    def _running(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is not None and child.poll() is None:
            return child
        if child is not None:
            # It ended between two writes (killed, out of memory): said once, as a failed
            # write (the records wait), and the next write starts another.
            raise LedgerError(f"{self.path}: {self._died()}")
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - kept while the child runs
        self._inbox.clear()
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "open_ticket_ai.runtime.ledger_process",
                str(self.path),
                repr(self._timeout),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            bufsize=0,
            close_fds=True,
            start_new_session=True,  # the terminal's Ctrl-C is the parent's to handle
        )
        assert child.stdin is not None
        assert child.stdout is not None
        with contextlib.suppress(OSError):  # a smaller pipe only means more, smaller writes
            fcntl.fcntl(child.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(child.stdin.fileno(), False)
        os.set_blocking(child.stdout.fileno(), False)
        self._child = child
        return child

    def _died(self) -> str:
        """What became of a child that stopped answering (it is gone after this)."""
        child = self._child
        self._child = None
        self._inbox.clear()
        if child is None:
            return "the ledger's writer process is not running"
        try:
            code = child.wait(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        _close_pipes(child)
        said = ""
        if self._errors is not None:
            self._errors.seek(0)
            lines = self._errors.read().decode(errors="replace").strip().splitlines()
            said = f": {lines[-1]}" if lines else ""
            self._errors.close()
            self._errors = None
        return f"the ledger's writer process ended (exit code {code}){said}"

    def close(self) -> None:
        with self._child_lock:
            child, self._child = self._child, None
            if child is not None:
                assert child.stdin is not None
                try:
                    child.stdin.close()  # the child ends at the end of its input
                    child.wait(timeout=STOP_TIMEOUT)
                except (OSError, subprocess.TimeoutExpired):
                    child.kill()
                    child.wait()
                _close_pipes(child)
            if self._errors is not None:
                self._errors.close()
                self._errors = None
        super().close()


def _close_pipes(child: subprocess.Popen[bytes]) -> None:
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):  # to a dead child: nothing waits for it
                stream.close()


class ProcessLedger:
    """The service's :class:`~open_ticket_ai.runtime.ledger.LedgerWriter`: hands finished
    runs to a :class:`ProcessLedgerStore`'s child from the event loop, with no thread (see
    the module).

    :meth:`submit` never blocks and never raises. Runs wait, in order, until the child says
    they are written: at most ``capacity`` of them (the oldest not yet sent are dropped
    beyond it, counted in :attr:`dropped`). A failed write sends its runs again after a
    pause that grows to :data:`~open_ticket_ai.runtime.ledger.RETRY_MAX` and calls
    ``on_error`` at most once a minute (by ``clock``). The child prunes the file at start and
    then once an hour. :meth:`flush` and :meth:`close` may be called from any thread."""

    def __init__(
        self,
        store: ProcessLedgerStore,
        *,
        retention: float = DEFAULT_RETENTION,
        max_runs: int = DEFAULT_MAX_RUNS,
        flush_delay: float = 0.2,
        chunk: int = CHUNK,
        capacity: int = MAX_PENDING,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if chunk < 1 or capacity < 1:
            raise ValueError("chunk and capacity must be at least 1")
        self.store = store
        self.retention = retention
        self.max_runs = max_runs
        self.flush_delay = flush_delay
        self.chunk = chunk
        self.capacity = capacity
        self._clock = clock
        self._reports = FailureReports(clock, on_error)
        self._lock = threading.Lock()
        self._unsent: deque[bytes] = deque()
        self._replays = 0
        """How many runs at the front of ``_unsent`` go as a replay."""
        self._unanswered: deque[bytes] = deque()
        """Runs written to the pipe (or waiting in ``_out``), in order: the child's answers
        are about the oldest of them. Any that come back go again as a replay."""
        self._out = bytearray()
        """Frames the pipe did not take yet."""
        self._retry_at = 0.0
        self._pause = 0.0
        self._next_prune = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._closed = False
        self._submitted = 0
        self.written = 0
        """Runs the child has written to the file."""
        self.dropped = 0
        """Runs lost: over the bound while the file could not be written, after close, or
        that could not be packed."""
        self.failures = 0
        """Writes and prunes that failed, and writer processes that ended."""

    @property
    def pending(self) -> int:
        """Runs submitted and not yet written (nor dropped)."""
        return len(self._unsent) + len(self._unanswered)

    # -- the event loop's side ------------------------------------------------------------

    def start(self) -> None:
        """Start the child and its first prune; called on the event loop's thread, whose
        timer then sends runs that wait (without a running loop they go every
        :attr:`chunk` runs, and at :meth:`flush` and :meth:`close`)."""
        with self._lock:
            self._take_loop()
            if not self._closing:
                self._pump(time.monotonic())

    def submit(self, record: RunRecord | RunEnded) -> None:
        """Queue ``record`` (or the event of a run that ended). Never blocks on I/O and never
        raises."""
        try:
            blob = marshalled(record)
        except Exception as exc:  # a plugin's value neither marshal nor JSON can hold
            with self._lock:
                self._submitted += 1
                self.dropped += 1
                self._reports.report(
                    LedgerError(f"run {record.run_id} cannot be stored: {exc}"), self.pending
                )
            return
        with self._lock:
            self._submitted += 1
            if self._closed:
                self.dropped += 1
                return
            unsent = self._unsent
            if len(unsent) + len(self._unanswered) >= self.capacity:
                if not unsent:  # all of them are with the child: this one has no room
                    self.dropped += 1
                    return
                unsent.popleft()
                self._replays = max(0, self._replays - 1)
                self.dropped += 1
            unsent.append(blob)
            waiting = len(unsent)
            if waiting % self.chunk == 0:  # not at every run while a failure's pause is on
                self._pump(time.monotonic())
            elif waiting == 1:
                self._arm()

    def _take_loop(self) -> None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._loop_thread = threading.get_ident()

    def _arm(self) -> None:
        """Pump again in ``flush_delay`` seconds (on the loop's thread only)."""
        if self._timer is not None or self._closed:
            return
        if self._loop is None:
            self._take_loop()
        if self._loop is None or self._loop_thread != threading.get_ident():
            return
        if self._loop.is_closed():
            return
        self._timer = self._loop.call_later(self.flush_delay, self._tick)

    def _tick(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
            self._pump(time.monotonic())
            if self._unsent or self._unanswered or self._out:
                self._arm()

    # -- moving runs (with the lock held) -------------------------------------------------

    def _pump(self, now: float, *, force: bool = False) -> None:
        """Take the child's answers, then write what is due: a prune once an hour, the runs
        that wait unless a failure's pause is on (``force``: try once anyway)."""
        self._take_answers(now)
        if now >= self._next_prune and (force or now >= self._retry_at):
            self._next_prune = now + PRUNE_EVERY
            before = self._clock() - self.retention
            self._out += _frame(PRUNE, (before, self.max_runs))
        unsent = self._unsent
        if unsent and (force or now >= self._retry_at) and len(self._unanswered) < self.capacity:
            replays, self._replays = min(self._replays, len(unsent)), 0
            answered = self._unanswered
            if replays:
                again = [unsent.popleft() for _ in range(replays)]
                self._out += _frame(REPLAY, again)
                answered.extend(again)
            if unsent:
                blobs = list(unsent)
                unsent.clear()
                self._out += _frame(APPEND, blobs)
                answered.extend(blobs)
        if self._out and (force or now >= self._retry_at):
            try:
                written = self.store.write(self._out)
            except LedgerError as exc:
                self._lost(exc, now)
                return
            del self._out[:written]

    def _take_answers(self, now: float) -> None:
        try:
            answers = self.store.read()
        except LedgerError as exc:
            self._lost(exc, now)
            return
        answered = self._unanswered
        for kind, value in answers:
            if kind == DONE:
                for _ in range(value):
                    answered.popleft()
                self.written += value
                self._pause = 0.0
            elif kind == FAILED:
                count, error = value
                back = [answered.popleft() for _ in range(count)]
                self._unsent.extendleft(reversed(back))
                self._replays += count  # a replay skips what is there: safe either way
                self._failed(LedgerError(f"{self.store.path}: {error}"), now)
            elif kind == PRUNE_FAILED:
                self._next_prune = now + REPORT_EVERY
                self._failed(LedgerError(f"{self.store.path}: pruning failed: {value}"), now)

    def _lost(self, exc: LedgerError, now: float) -> None:
        """The child ended: what it had not confirmed goes again, as a replay, to the next
        one (after the pause)."""
        self._out.clear()
        answered = self._unanswered
        self._unsent.extendleft(reversed(answered))
        self._replays += len(answered)
        answered.clear()
        self._next_prune = 0.0  # the prune it may not have made
        self._failed(exc, now)

    def _failed(self, exc: LedgerError, now: float) -> None:
        self.failures += 1
        self._pause = min(max(self._pause * 2, self.flush_delay, 0.01), RETRY_MAX)
        self._retry_at = now + self._pause
        self._reports.report(exc, self.pending)

    # -- any thread -----------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Write what is pending now; True once as many runs as were submitted before the
        call are written or dropped, False when an attempt fails or ``timeout`` seconds
        pass first. Blocks: call it off the event loop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            failures = self.failures
        force = True
        while True:
            with self._lock:
                self._pump(time.monotonic(), force=force)
                force = False
                if self.written + self.dropped >= target:
                    return True
                if self.failures != failures:
                    return False
                writing = bool(self._out)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.store.wait(min(remaining, 0.05), writing=writing)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (for ``timeout`` seconds at most), stop the child and close
        the store. Runs submitted later are dropped."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self.flush(timeout)
        with self._lock:
            self._closed = True
        try:
            self.store.close()
        except Exception as exc:
            self._reports.report(exc, self.pending)


def main(argv: Sequence[str] | None = None) -> int:
    """The child: write what arrives on stdin to the ledger file (``PATH [TIMEOUT]``: how
    long a write waits for another writer's lock), answer on stdout."""
    args = list(argv if argv is not None else sys.argv[1:])
    path, timeout = args[0], float(args[1]) if len(args) > 1 else 5.0
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)  # the parent ends it, by closing the pipe
    store = SqliteLedgerStore(path, timeout=timeout)
    inbox = bytearray()

    def answer(command: bytes, payload: Any) -> None:
        data = memoryview(_frame(command, payload))
        while data:
            data = data[os.write(1, data) :]

    def commit(runs: list[bytes], replay: bool) -> None:
        if not runs:
            return
        try:
            store.append_bundles([marshal.loads(blob) for blob in runs], skip_written=replay)
        except Exception as exc:
            answer(FAILED, (len(runs), f"{type(exc).__name__}: {exc}"))
        else:
            answer(DONE, len(runs))
        runs.clear()

    try:
        while chunk := os.read(0, _READ):
            inbox += chunk
            runs: list[bytes] = []
            replay = False
            for command, payload in _frames(inbox):
                if command in (APPEND, REPLAY):
                    if runs and (command == REPLAY) != replay:
                        commit(runs, replay)
                    replay = command == REPLAY
                    runs.extend(payload)
                elif command == PRUNE:
                    commit(runs, replay)
                    before, keep = payload
                    try:
                        pruned = store.prune(before=before, keep=keep)
                    except Exception as exc:
                        answer(PRUNE_FAILED, f"{type(exc).__name__}: {exc}")
                    else:
                        answer(PRUNED, pruned)
                else:
                    commit(runs, replay)
                    answer(PRUNE_FAILED, f"unknown request {command!r}")
            commit(runs, replay)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
