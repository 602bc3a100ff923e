"""Run events as records on the bus: every event reaches every subscriber, a failing or slow
subscriber harms nothing, the log lines keep their names, and the run summary counts."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from open_ticket_ai import Action, Decision, PipeResult
from open_ticket_ai.cli.log_format import JsonFormatter, TextFormatter
from open_ticket_ai.core.pipes.records import StepReport
from open_ticket_ai.core.pipes.result import PipeStatus
from open_ticket_ai.core.triggers.base import FireStatus
from open_ticket_ai.runtime import events
from open_ticket_ai.runtime.events import (
    Event,
    EventBus,
    LogSubscriber,
    RunFailed,
    RunFinished,
    RunOutcome,
    RunStarted,
    SkipReason,
    summarise,
)
from open_ticket_ai.runtime.watchdog import LoopErrorReporter

SRC = Path(__file__).resolve().parents[2] / "src" / "open_ticket_ai"

EVENT_CLASSES = sorted(
    (
        cls
        for cls in vars(events).values()
        if inspect.isclass(cls)
        and issubclass(cls, Event)
        and cls is not Event
        and "name" in {k for c in cls.__mro__ for k in vars(c)}
        and hasattr(cls, "name")
        and cls is not events.RunEnded
    ),
    key=lambda cls: cls.__name__,
)

_SAMPLES: dict[type, Any] = {
    str: "x",
    int: 3,
    float: 0.25,
    bool: False,
}


def sample(cls: type[Event]) -> Event:
    """An instance of ``cls`` with a plausible value in every required field."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if (
            item.default is not dataclasses.MISSING
            or item.default_factory is not dataclasses.MISSING
        ):
            continue
        annotation = str(item.type)
        if "RunOutcome" in annotation:
            values[item.name] = RunOutcome.FAILED if cls is RunFailed else RunOutcome.SUCCEEDED
        elif "SkipReason" in annotation:
            values[item.name] = SkipReason.RUNNING
        elif "FireStatus" in annotation:
            values[item.name] = FireStatus.BUSY
        elif "BaseException" in annotation:
            values[item.name] = RuntimeError("boom")
        elif "tuple[str" in annotation:
            values[item.name] = ("a", "b")
        elif annotation.startswith("float"):
            values[item.name] = 1.5
        elif annotation.startswith("int"):
            values[item.name] = 2
        else:
            values[item.name] = "x"
    return cls(**values)


def test_every_event_class_is_found() -> None:
    names = {cls.__name__ for cls in EVENT_CLASSES}
    assert {"RunStarted", "RunFinished", "RunFailed", "RunSkipped", "LoopBlocked"} <= names
    assert len(EVENT_CLASSES) >= 25


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_every_event_reaches_every_subscriber_and_logs_in_both_formats(
    cls: type[Event], caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    seen: list[list[Event]] = [[], [], []]
    bus.subscribe(seen[0].append)
    bus.subscribe(seen[1].append, cls)
    bus.subscribe(seen[2].append, Event)
    bus.subscribe(LogSubscriber())
    event = sample(cls)
    with caplog.at_level(logging.DEBUG, logger="open_ticket_ai"):
        bus.publish(event)
    assert all(got == [event] for got in seen)
    assert dataclasses.is_dataclass(event)
    # Frozen: a slotted frozen dataclass refuses with FrozenInstanceError, or on Python 3.11
    # with a TypeError from the generated __setattr__ (CPython gh-90562); either way no change.
    first = dataclasses.fields(cls)[0].name if dataclasses.fields(cls) else "x"
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError, AttributeError)):
        setattr(event, first, "other")
    records = [r for r in caplog.records if getattr(r, "event", None) == cls.name]
    assert records, f"{cls.__name__} was not logged"
    record = records[0]
    assert cls.name in TextFormatter().format(record)
    body = json.loads(JsonFormatter().format(record))
    assert body["event"] == cls.name
    assert body["message"] == event.message()
    for key, value in event.fields().items():
        assert key in body
        assert body[key] == json.loads(json.dumps(value, default=str))


def test_a_subscriber_for_some_kinds_gets_only_those() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, RunFinished)
    started = RunStarted(runner="r", trigger=None, run_id="r-1", started=0.0)
    bus.publish(started)
    finished = RunFinished(
        runner="r",
        trigger=None,
        run_id="r-1",
        outcome=RunOutcome.SUCCEEDED,
        started=0.0,
        duration=0.1,
    )
    bus.publish(finished)
    assert got == [finished]


def test_a_raising_subscriber_harms_nothing_keeps_its_subscription_and_is_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    bus = EventBus(clock=lambda: now[0])
    before: list[Event] = []
    after: list[Event] = []
    calls = []

    def broken(event: Event) -> None:
        calls.append(event)
        raise ValueError("subscriber bug")

    bus.subscribe(before.append)
    bus.subscribe(broken, name="broken")
    bus.subscribe(after.append)
    event = RunStarted(runner="r", trigger=None, run_id="r-1", started=0.0)
    with caplog.at_level(logging.ERROR, logger="open_ticket_ai"):
        for _ in range(5):
            bus.publish(event)
            now[0] += 10  # 50 s in all: one report
        now[0] += 60
        bus.publish(event)  # a minute later: reported again, with the count it held back
    assert len(before) == len(after) == len(calls) == 6
    failures = [r for r in caplog.records if getattr(r, "event", None) == events.SUBSCRIBER_FAILED]
    assert len(failures) == 2
    assert "broken" in failures[0].getMessage()
    assert "ValueError: subscriber bug" in failures[0].getMessage()
    assert "4 more failures" in failures[1].getMessage()


async def test_a_slow_async_subscriber_delays_no_publisher_and_no_other_subscriber() -> None:
    bus = EventBus()
    gate = asyncio.Event()
    slow_got: list[Event] = []
    quick_got: list[Event] = []

    async def slow(event: Event) -> None:
        await gate.wait()
        slow_got.append(event)

    bus.subscribe(slow, name="slow")
    bus.subscribe(quick_got.append)
    sent = [RunStarted(runner="r", trigger=None, run_id=f"r-{n}", started=0.0) for n in range(3)]
    for event in sent:
        bus.publish(event)  # returns at once: the slow one waits in its own queue
    assert quick_got == sent
    await asyncio.sleep(0)
    assert slow_got == []
    gate.set()
    await bus.aclose()
    assert slow_got == sent


async def test_an_unsubscribed_callback_gets_nothing_more() -> None:
    bus = EventBus()
    got: list[Event] = []
    stop = bus.subscribe(got.append)
    event = RunStarted(runner="r", trigger=None, run_id="r-1", started=0.0)
    bus.publish(event)
    stop()
    bus.publish(event)
    assert got == [event]


def test_no_event_name_is_a_bare_string_outside_the_events_module() -> None:
    names = {
        value
        for key, value in vars(events).items()
        if key.isupper() and isinstance(value, str) and "." in value
    }
    assert "run.started" in names
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "events.py" and path.parent.name == "runtime":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert offenders == []


# -- the summary of a run ----------------------------------------------------------------


def updated(ticket: str, queue: str, before: str = "Incoming") -> Action:
    return Action.ticket_updated(ticket, "helpdesk", {"queue": (before, queue)})


def decided(ticket: str, label: str, confidence: float, used: str | None = None) -> Decision:
    below = used is not None
    return Decision(
        model="queue_model",
        label=label,
        confidence=confidence,
        ticket_id=ticket,
        below_threshold=below,
        used=used if below else label,
    )


def test_the_summary_counts_tickets_values_fallbacks_and_notes() -> None:
    actions = [
        updated("1", "Billing"),
        Action.note_added("1", "helpdesk", "routed"),
        updated("2", "Billing"),
        Action.note_added("2", "helpdesk", "routed"),
        updated("3", "Review"),
        Action.note_added("3", "helpdesk", "routed"),
        updated("4", "IT Support"),
    ]
    decisions = [
        decided("1", "Billing", 0.9),
        decided("2", "Billing", 0.8),
        decided("3", "Sales", 0.3, used="Review"),
        decided("4", "IT Support", 0.7),
    ]
    assert summarise(actions, decisions) == (
        "4 tickets; queue Billing 2, Review 1, IT Support 1 (1 below threshold -> Review); 3 notes"
    )


def test_a_run_that_did_nothing_outside_keeps_the_plain_line() -> None:
    assert summarise([], []) == ""
    finished = RunFinished(
        runner="route",
        trigger="t",
        run_id="route-1",
        outcome=RunOutcome.SUCCEEDED,
        started=0.0,
        duration=0.05,
    )
    assert finished.message() == "runner 'route' succeeded in 50.0ms"


def test_the_finished_line_carries_the_summary_and_marks_a_dry_run() -> None:
    finished = RunFinished(
        runner="route",
        trigger="t",
        run_id="route-1",
        outcome=RunOutcome.SUCCEEDED,
        started=0.0,
        duration=0.312,
        actions=(updated("1", "Billing"),),
        decisions=(decided("1", "Billing", 0.9),),
        dry_run=True,
    )
    assert finished.message() == (
        "runner 'route' succeeded in 312.0ms (dry run): 1 ticket; queue Billing 1"
    )


def test_decisions_without_updates_are_counted() -> None:
    assert summarise([], [decided("1", "Billing", 0.9)]) == "1 ticket; 1 decision"


def test_http_requests_and_created_tickets_are_counted() -> None:
    actions = [
        Action.http_request("POST", "https://user:pw@example.test/hook?token=s3cret", 200),
        Action.ticket_created("9", "helpdesk", "Printer on fire"),
    ]
    assert summarise(actions, []) == "1 ticket; 1 created; 1 HTTP request"
    assert actions[0].url == "https://example.test/hook?token=***"


def test_debug_shows_each_action_and_decision(caplog: pytest.LogCaptureFixture) -> None:
    event = RunFinished(
        runner="route",
        trigger="t",
        run_id="route-1",
        outcome=RunOutcome.SUCCEEDED,
        started=0.0,
        duration=0.1,
        result=PipeResult.success(),
        steps=(StepReport("p", "s", PipeStatus.SUCCEEDED, 0.1, 1, ""),),
        actions=(updated("1", "Billing"),),
        decisions=(decided("1", "Billing", 0.9),),
    )
    with caplog.at_level(logging.DEBUG, logger="open_ticket_ai"):
        LogSubscriber()(event)
    lines = [r.getMessage() for r in caplog.records]
    assert "run route-1: update ticket 1: queue 'Incoming' -> 'Billing'" in lines
    assert "run route-1: ticket 1: queue_model says 'Billing' (0.90)" in lines
    with caplog.at_level(logging.INFO, logger="open_ticket_ai"):
        caplog.clear()
        LogSubscriber()(event)
    assert len(caplog.records) == 1


def test_data_cannot_forge_a_text_log_line() -> None:
    forged = "Invoice\n2026-01-01T00:00:00.000Z ERROR   run.failed  runner 'x' failed\r\x1b[2J"
    record = logging.LogRecord(
        "open_ticket_ai", logging.INFO, __file__, 1, "ticket %s", (forged,), None
    )
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "Invoice\\n2026-01-01T00:00:00.000Z ERROR" in line


def test_the_loop_error_reporter_reports_each_problem_once_a_minute_with_the_count() -> None:
    now = [0.0]
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    reporter = LoopErrorReporter(bus, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        accept = {"message": "socket.accept() out of system resource", "exception": OSError(24)}
        for second in range(130):  # asyncio retries a failed accept every second
            now[0] = float(second)
            reporter(loop, accept)
        reporter(loop, {"message": "Task exception was never retrieved"})
    finally:
        loop.close()
    problems = [(e.problem, e.repeated) for e in seen]  # type: ignore[attr-defined]
    assert problems == [
        ("socket.accept() out of system resource", 0),
        ("socket.accept() out of system resource", 59),
        ("socket.accept() out of system resource", 59),
        ("Task exception was never retrieved", 0),
    ]
    assert "59 more since the last report" in seen[1].message()


@pytest.mark.parametrize(
    "created",
    [
        1_700_000_000.0,
        1_700_000_000.0004999,
        1_700_000_000.9999996,  # rounds up to the next second, as datetime does
        1_700_000_059.999,
        *[1.7e9 + i * 7.123456789 for i in range(200)],
    ],
)
def test_log_timestamps_read_as_datetime_writes_them(created: float) -> None:
    from datetime import UTC, datetime

    from open_ticket_ai.cli.log_format import _timestamp

    record = logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)
    record.created = created
    wanted = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert _timestamp(record) == wanted.replace("+00:00", "Z")
