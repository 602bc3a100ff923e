"""The run ledger's SQLite file written by a process of its own.

Turning a run into the JSON text SQLite inserts takes a few microseconds of Python per run,
and SQLite's work on it more; in a writer thread both compete with the event loop for the
interpreter (one thread runs Python at a time), so a busy service lost a third of its runs
per second to its ledger. Here the event loop only packs each run's plain values
(:func:`~open_ticket_ai.runtime.ledger.bundle_of`, then :mod:`marshal`: about a microsecond)
and the ledger's writer thread hands batches through a pipe to a child process, which
encodes and writes them on another core and answers each batch once it is committed.

:class:`ProcessLedgerStore` is the parent's side: a store like
:class:`~open_ticket_ai.runtime.ledger.SqliteLedgerStore` (it creates or checks the file the
same way, and reads go to the file directly), whose writes the child makes. The child starts
with the first write and again after it died; it ignores the terminal's signals and ends when
its pipe closes, so the parent's end, however abrupt, ends it after the batch in hand.

Frames, both ways: one command byte, a 4-byte length, a :mod:`marshal` payload. ``A`` (append:
a list of marshalled bundles), ``P`` (prune: before, keep), answered by ``K`` (done: a count)
or ``E`` (failed: the error's text, raised in the parent as
:class:`~open_ticket_ai.runtime.ledger.LedgerError`).
"""

from __future__ import annotations

import contextlib
import marshal
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from open_ticket_ai.runtime.ledger import (
    LedgerError,
    RunRecord,
    SqliteLedgerStore,
    marshalled,
)

__all__ = ["ProcessLedgerStore", "main"]

_HEAD = struct.Struct(">cI")
APPEND, PRUNE, DONE, FAILED = b"A", b"P", b"K", b"E"
STOP_TIMEOUT = 5.0
"""Seconds the child may take to end once its pipe is closed, before it is killed."""


def _send(stream: IO[bytes], command: bytes, payload: Any) -> None:
    data = marshal.dumps(payload)
    stream.write(_HEAD.pack(command, len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> tuple[bytes, Any] | None:
    head = stream.read(_HEAD.size)
    if len(head) < _HEAD.size:
        return None
    command, size = _HEAD.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return command, marshal.loads(data)


class ProcessLedgerStore(SqliteLedgerStore):
    """A ledger file whose writes a child process makes (see the module). Reading methods
    read the file here, as any reader does; call them from one thread at a time."""

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        super().__init__(path, timeout=timeout)  # creates or checks the file, as ever
        self._timeout = timeout
        self._child: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._child_lock = threading.Lock()

    @property
    def writer_pid(self) -> int | None:
        """The child's process id while it runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

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
            child = self._running()
            assert child.stdin is not None
            assert child.stdout is not None
            try:
                _send(child.stdin, command, payload)
                answer = _receive(child.stdout)
            except (BrokenPipeError, ConnectionError, OSError):
                answer = None
            if answer is None:
                raise LedgerError(f"{self.path}: {self._died()}")
            kind, value = answer
            if kind == FAILED:
                raise LedgerError(f"{self.path}: {value}")
            return value

    def _running(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is not None and child.poll() is None:
            return child
        if child is not None:
            # It ended between two writes (killed, out of memory): said once, as a failed
            # write (the records wait), and the next write starts another.
            raise LedgerError(f"{self.path}: {self._died()}")
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - kept while the child runs
        self._child = subprocess.Popen(
            [sys.executable, "-m", "open_ticket_ai.runtime.ledger_process", str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            close_fds=True,
            start_new_session=True,  # the terminal's Ctrl-C is the parent's to handle
        )
        return self._child

    def _died(self) -> str:
        """What became of a child that stopped answering (it is gone after this)."""
        child = self._child
        self._child = None
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


def main(argv: Sequence[str] | None = None) -> int:
    """The child: write what arrives on stdin to the ledger file, answer on stdout."""
    path = (argv if argv is not None else sys.argv[1:])[0]
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)  # the parent ends it, by closing the pipe
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    store = SqliteLedgerStore(path)
    try:
        while (request := _receive(requests)) is not None:
            command, payload = request
            try:
                if command == APPEND:
                    store.append_bundles([marshal.loads(blob) for blob in payload])
                    result: Any = len(payload)
                elif command == PRUNE:
                    before, keep = payload
                    result = store.prune(before=before, keep=keep)
                else:
                    raise LedgerError(f"unknown request {command!r}")
            except Exception as exc:
                _send(answers, FAILED, f"{type(exc).__name__}: {exc}")
            else:
                _send(answers, DONE, result)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
