"""The ledger written by a process of its own: the store behaviour every backend passes, and
what happens when that process dies, fails a write, or its parent goes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.runtime.ledger_behaviour import LedgerStoreBehaviour, full_run, make_run

from open_ticket_ai.runtime.ledger import (
    Ledger,
    LedgerError,
    LedgerStore,
    SqliteLedgerStore,
)
from open_ticket_ai.runtime.ledger_process import ProcessLedger, ProcessLedgerStore


class TestProcessLedgerStore(LedgerStoreBehaviour):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LedgerStore]:
        opened = ProcessLedgerStore(tmp_path / "var" / "ledger.sqlite")
        yield opened
        opened.close()

    def reopen(self, store: LedgerStore) -> LedgerStore:
        assert isinstance(store, ProcessLedgerStore)
        store.close()
        return ProcessLedgerStore(store.path)


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (and been reaped, or is a zombie) within ``within``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def test_the_child_writes_and_the_file_reads_as_any_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    store = ProcessLedgerStore(path)
    try:
        store.append([full_run("r-1"), make_run("r-2")])
        pid = store.writer_pid
        assert pid is not None
        assert pid != os.getpid()
        reader = SqliteLedgerStore(path, readonly=True)
        try:
            assert {r.run_id for r in reader.runs()} == {"r-1", "r-2"}
            found = reader.run("r-1")
            assert found is not None
            assert found.steps == full_run("r-1").steps
            assert found.decisions == full_run("r-1").decisions
        finally:
            reader.close()
    finally:
        store.close()
    assert gone(pid)


def test_a_child_that_died_is_reported_and_the_next_write_starts_another(tmp_path: Path) -> None:
    store = ProcessLedgerStore(tmp_path / "ledger.sqlite")
    try:
        store.append([make_run("r-1")])
        first = store.writer_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert gone(first)
        with pytest.raises(LedgerError, match=r"writer process ended \(exit code -9\)"):
            store.append([make_run("r-2")])
        store.append([make_run("r-2")])  # a new child
        assert store.writer_pid not in (None, first)
        assert {r.run_id for r in store.runs()} == {"r-1", "r-2"}
    finally:
        store.close()


def test_a_write_the_child_cannot_make_is_an_error_with_sqlites_reason(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    store = ProcessLedgerStore(path)
    try:
        store.append([make_run("r-1")])
        blocker = SqliteLedgerStore(path)  # another writer holds the file's write lock
        blocker._db.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(LedgerError, match="database is locked"):
                store.append([make_run("r-2")])
            assert time.monotonic() - started < 30
        finally:
            blocker._db.execute("ROLLBACK")
            blocker.close()
        store.append([make_run("r-2")])  # the same child, once the lock is gone
        assert {r.run_id for r in store.runs()} == {"r-1", "r-2"}
    finally:
        store.close()


def test_the_ledger_keeps_what_a_dead_child_did_not_write_and_writes_it_later(
    tmp_path: Path,
) -> None:
    errors: list[BaseException] = []
    store = ProcessLedgerStore(tmp_path / "ledger.sqlite")
    ledger = Ledger(store, flush_delay=0.01, on_error=errors.append)
    ledger.start()
    try:
        ledger.submit(make_run("r-1"))
        assert ledger.flush(30)
        pid = store.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        ledger.submit(make_run("r-2"))
        assert not ledger.flush(5) or errors == []  # the first attempt may fail...
        assert ledger.flush(30)  # ...and a later one writes it
        assert {r.run_id for r in store.runs()} == {"r-1", "r-2"}
        assert ledger.dropped == 0
    finally:
        ledger.close()


def test_the_child_ignores_the_terminals_ctrl_c_and_ends_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.runtime.ledger_behaviour import make_run
        from open_ticket_ai.runtime.ledger_process import ProcessLedgerStore
        store = ProcessLedgerStore({str(tmp_path / "ledger.sqlite")!r})
        store.append([make_run("r-1")])
        print(store.writer_pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, signal.SIGINT)
        os.kill(child, signal.SIGTERM)
        assert not gone(child, within=0.5)  # the parent decides when it ends
        parent.kill()  # however abrupt the parent's end, the child follows
        parent.wait(10)
        assert gone(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


# -- ProcessLedger: the event loop feeding the child -----------------------------------------


def test_runs_submitted_on_a_running_loop_reach_the_file_without_a_flush(tmp_path: Path) -> None:
    store = ProcessLedgerStore(tmp_path / "ledger.sqlite")
    ledger = ProcessLedger(store, flush_delay=0.01)

    async def main() -> None:
        ledger.start()
        for n in range(5):
            ledger.submit(make_run(f"r-{n}"))
        for _ in range(500):  # the loop's timer sends them and reads the answer
            if ledger.written == 5:
                return
            await asyncio.sleep(0.01)

    try:
        asyncio.run(main())
        assert ledger.written == 5
        assert ledger.pending == 0
        assert len(store.runs()) == 5
    finally:
        ledger.close()


def test_a_batch_the_child_cannot_commit_is_sent_again_once_it_can(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    errors: list[BaseException] = []
    ledger = ProcessLedger(
        ProcessLedgerStore(path, timeout=0.05), flush_delay=0.01, on_error=errors.append
    )
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
    try:
        ledger.submit(make_run("r-1"))
        assert not ledger.flush(10)  # the attempt fails: said, and the run kept
        assert ledger.pending == 1
        assert ledger.failures >= 1
        assert "database is locked" in str(errors[0])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    try:
        assert ledger.flush(30)
        assert ledger.written == 1
        assert ledger.dropped == 0
        assert [r.run_id for r in ledger.store.runs()] == ["r-1"]
    finally:
        ledger.close()


def test_a_dead_childs_unconfirmed_runs_go_to_the_next_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    errors: list[BaseException] = []
    store = ProcessLedgerStore(path)
    # The runs are of 2023: a retention that keeps them through the new child's prune.
    ledger = ProcessLedger(store, flush_delay=0.01, on_error=errors.append, retention=1e10)
    try:
        ledger.submit(make_run("r-1"))
        assert ledger.flush(30)
        pid = store.writer_pid
        assert pid is not None
        # The child wrote r-2 and died before it could say so: the parent still holds it.
        ledger.submit(make_run("r-2"))
        with ledger._lock:
            ledger._pump(time.monotonic(), force=True)
        for _ in range(500):
            if SqliteLedgerStore(path, readonly=True).run("r-2") is not None:
                break
            time.sleep(0.01)
        answers: list[tuple[bytes, object]] = []
        for _ in range(500):  # its answer, taken here: as if it was lost with the child
            answers += store.read()
            if answers:
                break
            time.sleep(0.01)
        assert answers == [(b"K", 1)]
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        assert ledger.written == 1
        assert ledger.pending == 1  # r-2, unconfirmed
        ledger.submit(make_run("r-3"))
        assert not ledger.flush(5) or errors == []  # the dead child is found and said...
        assert ledger.flush(30)  # ...and the next one writes what was not confirmed
        assert store.writer_pid not in (None, pid)
        assert sorted(r.run_id for r in store.runs()) == ["r-1", "r-2", "r-3"]  # r-2 once
        assert "writer process ended" in str(errors[0])
    finally:
        ledger.close()


def test_beyond_its_capacity_the_oldest_unsent_runs_are_dropped_and_counted(
    tmp_path: Path,
) -> None:
    ledger = ProcessLedger(ProcessLedgerStore(tmp_path / "ledger.sqlite"), capacity=3)
    for n in range(5):
        ledger.submit(make_run(f"r-{n}"))  # no loop, no chunk: they wait
    assert ledger.pending == 3
    assert ledger.dropped == 2
    ledger.close()
    assert ledger.written == 3
    reader = SqliteLedgerStore(tmp_path / "ledger.sqlite", readonly=True)
    assert sorted(r.run_id for r in reader.runs()) == ["r-2", "r-3", "r-4"]
    reader.close()


def test_close_writes_every_run_and_later_runs_are_dropped(tmp_path: Path) -> None:
    store = ProcessLedgerStore(tmp_path / "ledger.sqlite")
    ledger = ProcessLedger(store, chunk=7)
    for n in range(20):
        ledger.submit(make_run(f"r-{n}"))
    ledger.close()
    assert (ledger.written, ledger.pending, ledger.dropped) == (20, 0, 0)
    assert store.writer_pid is None
    ledger.submit(make_run("late"))
    assert ledger.dropped == 1
    reader = SqliteLedgerStore(tmp_path / "ledger.sqlite", readonly=True)
    assert len(reader.runs(limit=100)) == 20
    reader.close()
