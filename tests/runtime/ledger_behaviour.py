"""The behaviour every LedgerStore passes.

Subclass :class:`LedgerStoreBehaviour` in a backend's test module and provide the ``store``
fixture (an open, empty store) and :meth:`LedgerStoreBehaviour.reopen` (the same storage,
closed and opened again)::

    class TestMyLedgerStore(LedgerStoreBehaviour):
        @pytest.fixture
        def store(self) -> Iterator[LedgerStore]: ...

        def reopen(self, store: LedgerStore) -> LedgerStore: ...

The record builders (:func:`make_run`, :func:`full_run`) are shared with the CLI tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import pytest

from open_ticket_ai.core.pipes.records import Action, Decision, StepReport
from open_ticket_ai.core.pipes.result import PipeStatus
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import LedgerStore, RunRecord, TicketEntry

T0 = 1_700_000_000.0
"""A fixed start of time for records: 2023-11-14 22:13:20 UTC."""


def make_run(
    run_id: str,
    *,
    runner: str = "fetch",
    started: float = T0,
    duration: float = 0.25,
    outcome: RunOutcome = RunOutcome.SUCCEEDED,
    error: str | None = None,
    trigger: str | None = "every_minute",
    steps: Sequence[StepReport] = (),
    actions: Sequence[Action] = (),
    decisions: Sequence[Decision] = (),
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        runner=runner,
        trigger=trigger,
        payload_size=None,
        scheduled=None,
        started=started,
        ended=started + duration,
        outcome=outcome,
        error=error,
        dry_run=False,
        steps=tuple(steps),
        actions=tuple(actions),
        decisions=tuple(decisions),
    )


def in_step(action: Action, step: str, *, dry_run: bool = False) -> Action:
    """The action as the run context records it: with its step's path."""
    return dataclasses.replace(action, step=step, dry_run=dry_run)


STEP_0 = "orchestrator.runners[0].run.steps[0]"
STEP_1 = "orchestrator.runners[0].run.steps[1]"
STEP_2 = "orchestrator.runners[0].run.steps[2]"


def full_run(run_id: str = "route-7", *, started: float = T0, ticket_id: str = "42") -> RunRecord:
    """A run using every field: steps with for_each items, all four kinds of action, a dry
    run flag, decisions with their top three, a trigger payload and a schedule."""
    return RunRecord(
        run_id=run_id,
        runner="route",
        trigger="helpdesk_hook",
        payload_size=1234,
        scheduled=started - 0.5,
        started=started,
        ended=started + 2.75,
        outcome=RunOutcome.FAILED,
        error="step notify: HTTP 503 from https://chat.example.com/hooks",
        dry_run=True,
        steps=(
            StepReport(STEP_0, "classify", PipeStatus.SUCCEEDED, 0.5, 1, "queue Billing"),
            StepReport(
                STEP_1,
                "update_each",
                PipeStatus.FAILED,
                1.25,
                1,
                "1 of 4 items failed",
                (
                    PipeStatus.SUCCEEDED,
                    PipeStatus.SUCCEEDED,
                    PipeStatus.FAILED,
                    PipeStatus.SUCCEEDED,
                ),
            ),
            StepReport(STEP_2, "notify", PipeStatus.FAILED, 1.0, 3, "HTTP 503"),
        ),
        actions=(
            in_step(
                Action.ticket_updated(
                    ticket_id, "otrs", {"queue": ("Incoming", "Billing"), "priority": (3, 4)}
                ),
                STEP_1,
                dry_run=True,
            ),
            in_step(
                Action.note_added(
                    ticket_id,
                    "otrs",
                    "Routed to Billing.\nConfidence 0.91 [auto]",
                    note_id="n-9",
                    marker="otai:route",
                ),
                STEP_1,
                dry_run=True,
            ),
            in_step(Action.ticket_created("77", "zammad", "Follow-up for 42"), STEP_1),
            in_step(
                Action.http_request("post", "https://u:pw@chat.example.com/hooks?token=s3", 503),
                STEP_2,
            ),
        ),
        decisions=(
            Decision(
                model="queue-model",
                label="Billing",
                confidence=0.91,
                top=(("Billing", 0.91), ("Sales", 0.06), ("IT", 0.03)),
                ticket_id=ticket_id,
                used="Billing",
                step=STEP_0,
            ),
            Decision(
                model="priority-model",
                label="high",
                confidence=0.4,
                top=(("high", 0.4), ("normal", 0.35), ("low", 0.25)),
                ticket_id=ticket_id,
                below_threshold=True,
                used=3,
                step=STEP_0,
            ),
        ),
    )


def touching(
    run_id: str, ticket_id: str, system: str, *, started: float, label: str = "Billing"
) -> RunRecord:
    """A run that classified a ticket and then moved it in ``system``."""
    return make_run(
        run_id,
        runner="route",
        started=started,
        decisions=[
            Decision(model="m", label=label, confidence=0.9, ticket_id=ticket_id, used=label)
        ],
        actions=[
            in_step(Action.ticket_updated(ticket_id, system, {"queue": ("Inbox", label)}), STEP_1)
        ],
    )


def ids(records: Sequence[RunRecord]) -> list[str]:
    return [record.run_id for record in records]


class LedgerStoreBehaviour:
    @pytest.fixture
    def store(self) -> Iterator[LedgerStore]:
        raise NotImplementedError("a backend's test class provides the store fixture")

    def reopen(self, store: LedgerStore) -> LedgerStore:
        """Close ``store`` and open the same storage again."""
        raise NotImplementedError

    # -- round trips ----------------------------------------------------------------------

    def test_a_run_reads_back_identical(self, store: LedgerStore) -> None:
        record = full_run()
        store.append([record])
        assert store.run(record.run_id) == record
        assert store.runs() == [record]

    def test_a_bare_run_reads_back_identical(self, store: LedgerStore) -> None:
        record = make_run("fetch-1", trigger=None)
        store.append([record])
        assert store.run("fetch-1") == record

    def test_read_back_types_are_the_records(self, store: LedgerStore) -> None:
        store.append([full_run()])
        found = store.run("route-7")
        assert found is not None
        assert type(found.outcome) is RunOutcome
        assert all(type(step.status) is PipeStatus for step in found.steps)
        assert all(type(item) is PipeStatus for item in found.steps[1].items)
        assert found.actions[0].changes == {
            "queue": ("Incoming", "Billing"),
            "priority": (3, 4),
        }
        assert all(isinstance(pair, tuple) for pair in found.actions[0].changes.values())
        assert found.decisions[0].top == (("Billing", 0.91), ("Sales", 0.06), ("IT", 0.03))
        assert found.duration == pytest.approx(2.75)

    def test_unknown_run_is_none(self, store: LedgerStore) -> None:
        store.append([make_run("fetch-1")])
        assert store.run("nope") is None
        assert store.run("fetch") is None  # no prefix matching

    def test_append_nothing_is_fine(self, store: LedgerStore) -> None:
        store.append([])
        assert store.runs() == []
        assert store.last_runs() == {}

    def test_many_runs_in_one_append(self, store: LedgerStore) -> None:
        batch = [full_run(f"route-{n}", started=T0 + n) for n in range(1200)]
        store.append(batch)
        assert store.runs(limit=2000) == batch[::-1]

    def test_a_repeated_run_id_finds_the_newest(self, store: LedgerStore) -> None:
        store.append([make_run("fetch-1", started=T0)])
        store.append([make_run("fetch-1", started=T0 + 60, outcome=RunOutcome.FAILED)])
        found = store.run("fetch-1")
        assert found is not None
        assert found.started == T0 + 60
        assert len(store.runs()) == 2

    # -- listing --------------------------------------------------------------------------

    def test_runs_are_newest_first(self, store: LedgerStore) -> None:
        store.append([make_run("b", started=T0 + 10), make_run("a", started=T0)])
        store.append([make_run("c", started=T0 + 5)])
        assert ids(store.runs()) == ["b", "c", "a"]

    def test_runs_filter_by_runner_and_outcome(self, store: LedgerStore) -> None:
        store.append(
            [
                make_run("f1", runner="fetch", started=T0),
                make_run("f2", runner="fetch", started=T0 + 1, outcome=RunOutcome.FAILED),
                make_run("r1", runner="route", started=T0 + 2, outcome=RunOutcome.FAILED),
                make_run("r2", runner="route", started=T0 + 3, outcome=RunOutcome.TIMED_OUT),
            ]
        )
        assert ids(store.runs(runner="fetch")) == ["f2", "f1"]
        assert ids(store.runs(outcome=RunOutcome.FAILED)) == ["r1", "f2"]
        assert ids(store.runs(runner="route", outcome=RunOutcome.FAILED)) == ["r1"]
        assert store.runs(runner="nobody") == []
        assert store.runs(outcome=RunOutcome.STUCK) == []

    def test_runs_filter_by_time_and_limit(self, store: LedgerStore) -> None:
        store.append([make_run(f"f{n}", started=T0 + n * 60) for n in range(10)])
        assert ids(store.runs(since=T0 + 7 * 60)) == ["f9", "f8", "f7"]
        assert ids(store.runs(until=T0 + 2 * 60)) == ["f1", "f0"]
        assert ids(store.runs(since=T0 + 3 * 60, until=T0 + 5 * 60)) == ["f4", "f3"]
        assert ids(store.runs(limit=3)) == ["f9", "f8", "f7"]
        assert ids(store.runs(since=T0 + 60, limit=2)) == ["f9", "f8"]
        assert store.runs(limit=0) == []

    def test_counts_per_runner_and_outcome(self, store: LedgerStore) -> None:
        store.append(
            [
                make_run("old", runner="fetch", started=T0 - 3600),
                make_run("f1", runner="fetch", started=T0),
                make_run("f2", runner="fetch", started=T0 + 1),
                make_run("f3", runner="fetch", started=T0 + 2, outcome=RunOutcome.FAILED),
                make_run("r1", runner="route", started=T0 + 3, outcome=RunOutcome.SKIPPED),
            ]
        )
        assert store.counts(since=T0) == {
            "fetch": {RunOutcome.SUCCEEDED: 2, RunOutcome.FAILED: 1},
            "route": {RunOutcome.SKIPPED: 1},
        }
        assert store.counts(since=T0 + 100) == {}

    def test_last_runs_is_the_latest_of_each_runner(self, store: LedgerStore) -> None:
        store.append(
            [
                make_run("f2", runner="fetch", started=T0 + 20),
                make_run("f1", runner="fetch", started=T0 + 10),
                make_run("r1", runner="route", started=T0 + 5),
                make_run("z1", runner="zzz", started=T0),
            ]
        )
        store.append([full_run("route-9", started=T0 + 30)])
        last = store.last_runs()
        assert {name: record.run_id for name, record in last.items()} == {
            "fetch": "f2",
            "route": "route-9",
            "zzz": "z1",
        }
        assert last["route"] == full_run("route-9", started=T0 + 30)

    # -- tickets --------------------------------------------------------------------------

    def test_ticket_has_every_action_and_decision_newest_first(self, store: LedgerStore) -> None:
        first = touching("route-1", "42", "otrs", started=T0, label="Sales")
        other = touching("route-2", "43", "otrs", started=T0 + 10)
        last = full_run("route-3", started=T0 + 20)
        store.append([first, other, last])
        found = store.ticket("42")
        assert all(isinstance(entry, TicketEntry) for entry in found)
        assert [entry.run_id for entry in found] == ["route-3"] * 4 + ["route-1"] * 2
        # full_run's actions on 42: update, note (the created ticket is 77, the request none)
        newest = [entry.action for entry in found[:2]]
        assert newest == [last.actions[1], last.actions[0]]
        assert [entry.decision for entry in found[2:4]] == [last.decisions[1], last.decisions[0]]
        assert found[4].action == first.actions[0]
        assert found[5].decision == first.decisions[0]
        assert all((entry.action is None) != (entry.decision is None) for entry in found)
        assert found[0].runner == "route"
        assert found[0].at == last.ended
        assert [entry.action for entry in store.ticket("77")] == [last.actions[2]]
        assert store.ticket("nope") == []

    def test_ticket_filters_by_system(self, store: LedgerStore) -> None:
        store.append(
            [
                touching("route-1", "42", "otrs", started=T0),
                touching("route-2", "42", "zammad", started=T0 + 10),
                make_run(
                    "guess-1",
                    started=T0 + 20,
                    decisions=[Decision(model="m", label="IT", confidence=0.2, ticket_id="42")],
                ),
            ]
        )
        otrs = store.ticket("42", system="otrs")
        assert [(e.run_id, e.action is not None) for e in otrs] == [
            ("guess-1", False),  # a decision without changes is in no system in particular
            ("route-1", True),
            ("route-1", False),
        ]
        zammad = store.ticket("42", system="zammad")
        assert [e.run_id for e in zammad] == ["guess-1", "route-2", "route-2"]
        assert [e.run_id for e in store.ticket("42", system="other")] == ["guess-1"]
        assert len(store.ticket("42")) == 5

    def test_ticket_limit_keeps_the_newest(self, store: LedgerStore) -> None:
        store.append([touching(f"route-{n}", "42", "otrs", started=T0 + n) for n in range(10)])
        found = store.ticket("42", limit=3)
        assert [(e.run_id, e.action is not None) for e in found] == [
            ("route-9", True),
            ("route-9", False),
            ("route-8", True),
        ]

    # -- pruning --------------------------------------------------------------------------

    def test_prune_by_age(self, store: LedgerStore) -> None:
        store.append([touching(f"route-{n}", "42", "otrs", started=T0 + n * 60) for n in range(5)])
        assert store.prune(before=T0 + 3 * 60, keep=1000) == 3
        assert ids(store.runs()) == ["route-4", "route-3"]
        assert {entry.run_id for entry in store.ticket("42")} == {"route-3", "route-4"}
        assert store.run("route-0") is None
        assert store.prune(before=T0 + 3 * 60, keep=1000) == 0

    def test_prune_by_count_keeps_the_newest(self, store: LedgerStore) -> None:
        store.append([full_run(f"route-{n}", started=T0 + n) for n in range(6)])
        assert store.prune(before=0.0, keep=2) == 4
        assert ids(store.runs()) == ["route-5", "route-4"]
        assert {entry.run_id for entry in store.ticket("42")} == {"route-4", "route-5"}
        assert store.counts(since=0.0) == {"route": {RunOutcome.FAILED: 2}}
        assert store.prune(before=0.0, keep=0) == 2
        assert store.runs() == []
        assert store.ticket("42") == []
        assert store.last_runs() == {}

    def test_prune_by_age_and_count_together(self, store: LedgerStore) -> None:
        store.append([make_run(f"f{n}", started=T0 + n) for n in range(10)])
        assert store.prune(before=T0 + 2, keep=5) == 5
        assert ids(store.runs()) == ["f9", "f8", "f7", "f6", "f5"]

    # -- durability -----------------------------------------------------------------------

    def test_reopening_keeps_everything(self, store: LedgerStore) -> None:
        records = [full_run(f"route-{n}", started=T0 + n) for n in range(3)]
        store.append(records)
        store.append([make_run("fetch-1", started=T0 + 10)])
        reopened = self.reopen(store)
        try:
            assert reopened.runs() == [make_run("fetch-1", started=T0 + 10), *records[::-1]]
            assert len(reopened.ticket("42")) == 12
            reopened.append([make_run("fetch-2", started=T0 + 20)])
            assert ids(reopened.runs(runner="fetch")) == ["fetch-2", "fetch-1"]
        finally:
            reopened.close()

    def test_close_twice_is_fine(self, store: LedgerStore) -> None:
        store.close()
        store.close()
