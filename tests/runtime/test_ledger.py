"""SqliteLedgerStore (the shared store suite, plus what is SQLite's own) and Ledger, the
background writer, against real files in tmp_path."""

from __future__ import annotations

import marshal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tests.runtime.ledger_behaviour import (
    T0,
    LedgerStoreBehaviour,
    full_run,
    ids,
    in_step,
    make_run,
)

from open_ticket_ai.core.pipes.records import Action, Decision
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import (
    DEFAULT_LEDGER_PATH,
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    LedgerStore,
    RunRecord,
    SqliteLedgerStore,
    TicketEntry,
    ledger_path_of,
)


class TestSqliteLedgerStore(LedgerStoreBehaviour):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LedgerStore]:
        opened = SqliteLedgerStore(tmp_path / "var" / "ledger.sqlite")
        yield opened
        opened.close()

    def reopen(self, store: LedgerStore) -> LedgerStore:
        assert isinstance(store, SqliteLedgerStore)
        store.close()
        return SqliteLedgerStore(store.path)


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return count


# -- SQLite specifics ---------------------------------------------------------------------


def test_the_file_and_its_directories_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    store = SqliteLedgerStore(path)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM ledger_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_pruning_cascades_leaving_no_orphans(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    store = SqliteLedgerStore(path)
    store.append([full_run(f"route-{n}", started=T0 + n) for n in range(5)])
    assert (rows(path, "steps"), rows(path, "actions"), rows(path, "decisions")) == (15, 20, 10)
    assert store.prune(before=T0 + 3, keep=1) == 4
    store.close()
    assert rows(path, "runs") == 1
    assert (rows(path, "steps"), rows(path, "actions"), rows(path, "decisions")) == (3, 4, 2)
    with sqlite3.connect(path) as db:
        orphans = db.execute(
            "SELECT COUNT(*) FROM actions WHERE run NOT IN (SELECT seq FROM runs)"
        ).fetchone()[0]
    assert orphans == 0


def test_values_json_cannot_hold_are_kept_as_text(tmp_path: Path) -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    record = make_run(
        "fetch-1",
        actions=[
            in_step(
                Action.ticket_updated(
                    "42", "otrs", {"due": (None, when), "cost": (1, Decimal("2.50"))}
                ),
                "s",
            )
        ],
        decisions=[Decision(model="m", label="x", confidence=0.5, used=when)],
    )
    with_store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    with_store.append([record])
    found = with_store.run("fetch-1")
    with_store.close()
    assert found is not None
    assert found.actions[0].changes == {"due": (None, str(when)), "cost": (1, "2.50")}
    assert found.decisions[0].used == str(when)


def test_number_like_values_are_stored_as_plain_numbers(tmp_path: Path) -> None:
    # A classifier may hand over a Decimal or numpy scalar: SQLite cannot bind those, and a
    # batch that cannot be written would be retried forever.
    record = make_run(
        "fetch-1",
        decisions=[
            Decision(
                model="m",
                label="x",
                confidence=Decimal("0.75"),  # type: ignore[arg-type]
                top=(("x", Decimal("0.75")),),  # type: ignore[arg-type]
            )
        ],
    )
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    store.append([record])
    found = store.run("fetch-1")
    store.close()
    assert found is not None
    assert found.decisions[0].confidence == 0.75
    assert found.decisions[0].top == (("x", 0.75),)


def test_a_file_that_is_not_sqlite_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(LedgerError, match=r"notes\.txt is not a run ledger") as caught:
        SqliteLedgerStore(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, OpenTicketAIError)
    assert path.read_text().startswith("these are my notes")


def test_another_sqlite_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY)")
    db.close()
    for readonly in (False, True):
        with pytest.raises(LedgerError, match=r"helpdesk.sqlite is not a run ledger.*tickets"):
            SqliteLedgerStore(path, readonly=readonly)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert tables == {"tickets"}


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    SqliteLedgerStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE ledger_schema SET version = ?", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(LedgerError, match=r"ledger.sqlite was written by a newer open-ticket-ai"):
        SqliteLedgerStore(path)
    with pytest.raises(LedgerError, match="newer"):
        SqliteLedgerStore(path, readonly=True)


def test_readonly_needs_an_existing_ledger(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(LedgerError, match=r"missing\.sqlite"):
        SqliteLedgerStore(missing, readonly=True)
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(LedgerError, match="no run is recorded yet"):
        SqliteLedgerStore(empty, readonly=True)


def test_a_reader_works_while_a_writer_has_the_file_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    writer = SqliteLedgerStore(path)
    writer.append([make_run("fetch-1", started=T0)])
    reader = SqliteLedgerStore(path, readonly=True)
    try:
        assert ids(reader.runs()) == ["fetch-1"]
        writer.append([make_run("fetch-2", started=T0 + 1)])
        assert ids(reader.runs()) == ["fetch-2", "fetch-1"]
        assert set(reader.last_runs()) == {"fetch"}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.append([make_run("fetch-3")])
        writer.append([make_run("fetch-3", started=T0 + 2)])
        assert reader.run("fetch-3") is not None
    finally:
        reader.close()
        writer.close()


def test_one_store_serves_several_threads(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for k in range(20):
                store.append([make_run(f"t{n}-{k}", started=T0 + k)])
                store.runs(limit=5)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.runs(limit=1000)) == 80
    store.close()


def test_ledger_path_is_relative_to_the_config_file() -> None:
    config = Path("/srv/otai/config.yml")
    assert ledger_path_of(config, None) == Path("/srv/otai") / DEFAULT_LEDGER_PATH
    assert ledger_path_of(config, None) == Path("/srv/otai/var/otai-ledger.sqlite")
    assert ledger_path_of(config, "data/runs.sqlite") == Path("/srv/otai/data/runs.sqlite")
    assert ledger_path_of(config, "/var/lib/otai/l.sqlite") == Path("/var/lib/otai/l.sqlite")
    assert ledger_path_of(Path("config.yml"), None) == Path("var/otai-ledger.sqlite")


def test_ticket_entry_holds_one_report() -> None:
    entry = TicketEntry("r", "route", T0, decision=Decision(model="m", label="a", confidence=1))
    assert entry.action is None
    assert entry.decision is not None


# -- Ledger, the writer -------------------------------------------------------------------


class FakeClock:
    """Wall-clock time that moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingStore:
    """A LedgerStore whose writes fail (like a full disk) until it is told to recover;
    what it does store goes to a real SQLite store."""

    def __init__(self, inner: SqliteLedgerStore, *, failing: bool = True) -> None:
        self.inner = inner
        self.failing = failing
        self.attempts = 0

    def append(self, runs: Sequence[RunRecord]) -> None:
        self.attempts += 1
        if self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        self.inner.append(runs)

    def runs(
        self,
        *,
        runner: str | None = None,
        outcome: RunOutcome | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        return self.inner.runs(
            runner=runner, outcome=outcome, since=since, until=until, limit=limit
        )

    def run(self, run_id: str) -> RunRecord | None:
        return self.inner.run(run_id)

    def ticket(
        self, ticket_id: str, *, system: str | None = None, limit: int = 200
    ) -> list[TicketEntry]:
        return self.inner.ticket(ticket_id, system=system, limit=limit)

    def counts(self, *, since: float) -> dict[str, dict[RunOutcome, int]]:
        return self.inner.counts(since=since)

    def last_runs(self) -> dict[str, RunRecord]:
        return self.inner.last_runs()

    def prune(self, *, before: float, keep: int) -> int:
        return self.inner.prune(before=before, keep=keep)

    def close(self) -> None:
        self.inner.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteLedgerStore]:
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    yield store
    store.close()


def test_submitted_runs_are_written_after_flush(sqlite_store: SqliteLedgerStore) -> None:
    ledger = Ledger(sqlite_store, flush_delay=60.0, clock=FakeClock())
    ledger.start()
    records = [full_run(f"route-{n}", started=T0 + n) for n in range(3)]
    for record in records:
        ledger.submit(record)
    assert ledger.pending == 3
    assert ledger.flush(timeout=10.0)
    assert (ledger.pending, ledger.written, ledger.dropped, ledger.failures) == (0, 3, 0, 0)
    assert sqlite_store.runs() == records[::-1]
    ledger.close()


def test_runs_are_written_after_the_flush_delay_without_a_flush(
    sqlite_store: SqliteLedgerStore,
) -> None:
    ledger = Ledger(sqlite_store, flush_delay=0.05, clock=FakeClock())
    ledger.start()
    ledger.submit(make_run("fetch-1"))
    wait_for(lambda: ledger.written == 1)
    assert ids(sqlite_store.runs()) == ["fetch-1"]
    ledger.close()


def test_a_full_batch_is_written_without_waiting_for_the_delay(
    sqlite_store: SqliteLedgerStore,
) -> None:
    ledger = Ledger(sqlite_store, flush_delay=60.0, batch=5, clock=FakeClock())
    ledger.start()
    for n in range(12):
        ledger.submit(make_run(f"fetch-{n}", started=T0 + n))
    wait_for(lambda: ledger.written == 10)
    assert ledger.pending == 2
    assert ledger.flush(timeout=10.0)
    assert len(sqlite_store.runs(limit=100)) == 12
    ledger.close()


def test_failing_writes_are_reported_once_a_minute_and_kept(
    sqlite_store: SqliteLedgerStore,
) -> None:
    clock = FakeClock()
    store = FailingStore(sqlite_store)
    reported: list[BaseException] = []
    ledger = Ledger(store, flush_delay=60.0, on_error=reported.append, clock=clock)
    ledger.start()
    for n in range(3):
        ledger.submit(make_run(f"fetch-{n}", started=T0 + n))

    assert not ledger.flush(timeout=10.0)
    assert len(reported) == 1
    assert isinstance(reported[0], sqlite3.OperationalError)
    assert "disk is full" in str(reported[0])
    assert ledger.pending == 3

    clock.now += 30
    ledger.submit(make_run("fetch-3", started=T0 + 3))
    assert not ledger.flush(timeout=10.0)
    assert len(reported) == 1  # half a minute later: still the same failure, not reported
    clock.now += 31
    assert not ledger.flush(timeout=10.0)
    assert len(reported) == 2
    assert ledger.failures >= 3
    assert (ledger.pending, ledger.written, ledger.dropped) == (4, 0, 0)

    store.failing = False
    assert ledger.flush(timeout=10.0)
    assert (ledger.pending, ledger.written, ledger.dropped) == (0, 4, 0)
    assert ids(sqlite_store.runs()) == ["fetch-3", "fetch-2", "fetch-1", "fetch-0"]
    assert len(reported) == 2
    ledger.close()


def test_the_writer_retries_by_itself_once_the_store_recovers(
    sqlite_store: SqliteLedgerStore,
) -> None:
    store = FailingStore(sqlite_store)
    ledger = Ledger(store, flush_delay=0.01, on_error=lambda exc: None, clock=FakeClock())
    ledger.start()
    ledger.submit(make_run("fetch-1"))
    wait_for(lambda: store.attempts >= 2)
    assert ledger.written == 0
    store.failing = False
    wait_for(lambda: ledger.written == 1)
    assert ids(sqlite_store.runs()) == ["fetch-1"]
    ledger.close()


def test_the_bound_drops_the_oldest_and_counts_them(sqlite_store: SqliteLedgerStore) -> None:
    store = FailingStore(sqlite_store)
    ledger = Ledger(
        store, flush_delay=60.0, capacity=10, on_error=lambda exc: None, clock=FakeClock()
    )
    ledger.start()
    for n in range(8):
        ledger.submit(make_run(f"fetch-{n:02}", started=T0 + n))
    assert not ledger.flush(timeout=10.0)  # the 8 are put back after the failed write
    for n in range(8, 25):
        ledger.submit(make_run(f"fetch-{n:02}", started=T0 + n))
    assert (ledger.pending, ledger.dropped) == (10, 15)
    store.failing = False
    assert ledger.flush(timeout=10.0)
    assert (ledger.pending, ledger.written, ledger.dropped) == (0, 10, 15)
    assert ids(sqlite_store.runs(limit=100)) == [f"fetch-{n:02}" for n in range(24, 14, -1)]
    ledger.close()


def test_a_failed_batch_put_back_keeps_the_bound(sqlite_store: SqliteLedgerStore) -> None:
    store = FailingStore(sqlite_store)
    ledger = Ledger(store, flush_delay=60.0, capacity=5, batch=100, on_error=lambda exc: None)
    for n in range(5):
        ledger.submit(make_run(f"fetch-{n}", started=T0 + n))
    assert not ledger.flush(timeout=10.0)  # no thread yet: written here, and failed
    assert (ledger.pending, ledger.dropped) == (5, 0)
    ledger.submit(make_run("fetch-5", started=T0 + 5))
    assert (ledger.pending, ledger.dropped) == (5, 1)
    store.failing = False
    assert ledger.flush(timeout=10.0)
    assert ids(sqlite_store.runs()) == ["fetch-5", "fetch-4", "fetch-3", "fetch-2", "fetch-1"]
    ledger.close()


def test_close_writes_what_is_pending_and_closes_the_store(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(SqliteLedgerStore(path), flush_delay=60.0, clock=FakeClock())
    ledger.start()
    for n in range(3):
        ledger.submit(make_run(f"fetch-{n}", started=T0 + n))
    ledger.close(timeout=10.0)
    assert (ledger.pending, ledger.written) == (0, 3)
    ledger.submit(make_run("late"))
    assert ledger.dropped == 1
    ledger.close()  # a second close does nothing
    reopened = SqliteLedgerStore(path, readonly=True)
    assert ids(reopened.runs()) == ["fetch-2", "fetch-1", "fetch-0"]
    reopened.close()


def test_close_without_start_writes_in_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(SqliteLedgerStore(path))
    ledger.submit(make_run("fetch-1"))
    ledger.close()
    assert ledger.written == 1
    reopened = SqliteLedgerStore(path, readonly=True)
    assert ids(reopened.runs()) == ["fetch-1"]
    reopened.close()


def test_close_gives_up_on_a_store_that_keeps_failing(sqlite_store: SqliteLedgerStore) -> None:
    store = FailingStore(sqlite_store)
    reported: list[BaseException] = []
    ledger = Ledger(store, flush_delay=0.01, on_error=reported.append, clock=FakeClock())
    ledger.start()
    ledger.submit(make_run("fetch-1"))
    started = time.monotonic()
    ledger.close(timeout=0.3)
    assert time.monotonic() - started < 5.0
    assert (ledger.pending, ledger.written) == (1, 0)
    assert len(reported) == 1


def test_the_writer_prunes_at_start(sqlite_store: SqliteLedgerStore) -> None:
    clock = FakeClock(T0 + 86400)
    sqlite_store.append([make_run(f"old-{n}", started=T0 + n) for n in range(3)])
    sqlite_store.append([make_run(f"new-{n}", started=T0 + 86000 + n) for n in range(5)])
    ledger = Ledger(sqlite_store, retention=3600.0, max_runs=3, clock=clock)
    ledger.start()
    wait_for(lambda: len(sqlite_store.runs(limit=100)) == 3)
    assert ids(sqlite_store.runs()) == ["new-4", "new-3", "new-2"]
    ledger.close()


def test_a_failing_on_error_does_not_stop_the_writer(
    sqlite_store: SqliteLedgerStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore(sqlite_store)

    def broken(exc: BaseException) -> None:
        raise RuntimeError("reporter broke")

    ledger = Ledger(store, flush_delay=60.0, on_error=broken, clock=FakeClock())
    ledger.start()
    ledger.submit(make_run("fetch-1"))
    assert not ledger.flush(timeout=10.0)
    assert "on_error callback failed" in caplog.text
    store.failing = False
    assert ledger.flush(timeout=10.0)
    assert ledger.written == 1
    ledger.close()


def test_without_on_error_failures_are_logged(
    sqlite_store: SqliteLedgerStore, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(FailingStore(sqlite_store), flush_delay=60.0, clock=FakeClock())
    ledger.start()
    ledger.submit(make_run("fetch-1"))
    assert not ledger.flush(timeout=10.0)
    assert "the run ledger cannot be written (database or disk is full)" in caplog.text
    ledger.close(timeout=0.1)


def test_submit_is_quick_while_a_write_is_slow(sqlite_store: SqliteLedgerStore) -> None:
    writing = threading.Event()
    release = threading.Event()

    class SlowStore(FailingStore):
        def append(self, runs: Sequence[RunRecord]) -> None:
            writing.set()
            release.wait(10.0)
            super().append(runs)

    ledger = Ledger(SlowStore(sqlite_store, failing=False), flush_delay=0.0, clock=FakeClock())
    ledger.start()
    ledger.submit(make_run("first"))
    assert writing.wait(10.0)
    started = time.monotonic()
    for n in range(1000):
        ledger.submit(make_run(f"fetch-{n}"))
    assert time.monotonic() - started < 5.0  # generous: it must not wait for the write
    assert ledger.pending == 1001
    release.set()
    assert ledger.flush(timeout=10.0)
    assert ledger.written == 1001
    ledger.close()


def test_outcomes_survive_the_writer(sqlite_store: SqliteLedgerStore) -> None:
    ledger = Ledger(sqlite_store, clock=FakeClock())
    ledger.start()
    for n, outcome in enumerate(RunOutcome):
        ledger.submit(make_run(f"r{n}", started=T0 + n, outcome=outcome))
    assert ledger.flush()
    assert [r.outcome for r in sqlite_store.runs()] == list(RunOutcome)[::-1]
    ledger.close()


def test_an_earlier_files_index_on_outcomes_goes_and_its_runs_stay(tmp_path: Path) -> None:
    # Earlier versions indexed runs by outcome, a cost on every write; opening the file for
    # writing drops the index and keeps every run.
    path = tmp_path / "ledger.sqlite"
    store = SqliteLedgerStore(path)
    store.append([make_run("fetch-1")])
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("CREATE INDEX runs_outcome_started ON runs (outcome, started)")
    db.close()
    store = SqliteLedgerStore(path)
    assert store.run("fetch-1") is not None
    store.close()
    with sqlite3.connect(path) as db:
        indexes = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
    db.close()
    assert "runs_outcome_started" not in indexes


def test_a_run_as_the_runtime_hands_it_over_marshals_without_the_json_detour() -> None:
    # The runtime submits its RunEnded event, whose trigger is a TriggerRef (a str subclass
    # with the payload): marshal refuses subclasses, and every run would pay the fallback.
    from open_ticket_ai.core.pipes.context import TriggerRef
    from open_ticket_ai.runtime.events import RunFinished
    from open_ticket_ai.runtime.ledger import bundle_of, marshalled

    base = full_run("r-1")
    event = RunFinished(
        runner=base.runner,
        trigger=TriggerRef("hook", payload={"x": 1}),
        run_id=base.run_id,
        outcome=RunOutcome.SUCCEEDED,
        started=base.started,
        duration=base.duration,
        steps=base.steps,
    )
    bundle = bundle_of(event)
    assert type(bundle[0][2]) is str
    assert marshal.loads(marshal.dumps(bundle)) == bundle  # the fast path holds it
    assert marshal.loads(marshalled(event)) == bundle


def test_a_nan_confidence_is_stored_as_zero_not_refused(tmp_path: Path) -> None:
    # SQLite stores a NaN as NULL, which a NOT NULL column refuses: the batch goes the way
    # of the encoder, which makes it plain, and the other runs in it are kept as they are.
    nan = float("nan")
    odd = make_run(
        "fetch-1", decisions=[Decision(model="m", label="x", confidence=nan, top=(("x", 0.5),))]
    )
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    store.append([make_run("fetch-0"), odd])
    store.append([make_run("fetch-2")])
    found = store.run("fetch-1")
    assert ids(store.runs()) == ["fetch-2", "fetch-1", "fetch-0"]
    store.close()
    assert found is not None
    assert found.decisions[0].confidence == 0.0
    assert found.decisions[0].top == (("x", 0.5),)
