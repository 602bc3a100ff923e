"""Metrics: real events on a real bus become Prometheus series, read back from the text
format; and a real orchestrator's runs are counted exactly."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import math
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.virtual_clock import VirtualClockLoop

from open_ticket_ai import Action, Decision, build, parse_config
from open_ticket_ai.runtime import metrics as metrics_module
from open_ticket_ai.runtime.events import (
    EventBus,
    HttpRequestFailed,
    HttpRequestServed,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunMissed,
    RunOutcome,
    RunSkipped,
    RunStarted,
    RunStuck,
    SkipReason,
    WebhookUnauthorized,
)
from open_ticket_ai.runtime.metrics import CONTENT_TYPE, Metrics
from open_ticket_ai.runtime.orchestrator import Orchestrator

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: Metrics) -> Samples:
    """Every sample of ``metrics.render()``, by (sample name, labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate sample {key}"
            found[key] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def series(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (sample, labels), v in found.items() if sample == name}


def started(runner: str, at: float, scheduled: float | None = None, n: int = 1) -> RunStarted:
    return RunStarted(
        runner=runner, trigger="tick", run_id=f"{runner}-{n}", started=at, scheduled=scheduled
    )


def finished(runner: str, duration: float, n: int = 1, **extra: object) -> RunFinished:
    return RunFinished(
        runner=runner,
        trigger="tick",
        run_id=f"{runner}-{n}",
        outcome=extra.pop("outcome", RunOutcome.SUCCEEDED),  # type: ignore[arg-type]
        started=1000.0,
        duration=duration,
        **extra,  # type: ignore[arg-type]
    )


def ended_kwargs(runner: str, outcome: RunOutcome, duration: float, n: int) -> dict[str, object]:
    return {
        "runner": runner,
        "trigger": "tick",
        "run_id": f"{runner}-{n}",
        "outcome": outcome,
        "started": 1000.0,
        "duration": duration,
    }


# -- runs ------------------------------------------------------------------------------------


def test_runs_are_counted_by_runner_and_outcome_with_their_durations() -> None:
    bus = EventBus()
    metrics = Metrics(bus, runner_ids=["a", "b"])
    bus.publish(started("a", 100.25, scheduled=100.0))
    bus.publish(finished("a", 0.5))
    bus.publish(started("a", 200.0, n=2))
    bus.publish(RunFailed(**ended_kwargs("a", RunOutcome.FAILED, 2.0, 2), error="boom"))  # type: ignore[arg-type]
    bus.publish(finished("a", 0.25, n=3, outcome=RunOutcome.SKIPPED))
    bus.publish(RunFailed(**ended_kwargs("b", RunOutcome.TIMED_OUT, 30.0, 1)))  # type: ignore[arg-type]
    bus.publish(RunCancelled(**ended_kwargs("b", RunOutcome.CANCELLED, 1.5, 2)))  # type: ignore[arg-type]
    bus.publish(RunStuck(**ended_kwargs("b", RunOutcome.STUCK, 35.0, 3), grace=5.0))  # type: ignore[arg-type]
    found = samples(metrics)

    assert series(found, "otai_runs_total") == {
        frozenset({("runner", "a"), ("status", "succeeded")}): 1.0,
        frozenset({("runner", "a"), ("status", "failed")}): 1.0,
        frozenset({("runner", "a"), ("status", "skipped")}): 1.0,
        frozenset({("runner", "b"), ("status", "timed_out")}): 1.0,
        frozenset({("runner", "b"), ("status", "cancelled")}): 1.0,
        frozenset({("runner", "b"), ("status", "stuck")}): 1.0,
    }
    assert value(found, "otai_run_duration_seconds_count", runner="a") == 3
    assert value(found, "otai_run_duration_seconds_sum", runner="a") == 2.75
    assert value(found, "otai_run_duration_seconds_bucket", runner="a", le="0.5") == 2
    assert value(found, "otai_run_duration_seconds_bucket", runner="a", le="1.0") == 2
    assert value(found, "otai_run_duration_seconds_bucket", runner="a", le="2.5") == 3
    assert value(found, "otai_run_duration_seconds_count", runner="b") == 3
    assert value(found, "otai_run_duration_seconds_sum", runner="b") == 66.5
    assert value(found, "otai_run_duration_seconds_bucket", runner="b", le="30.0") == 2


def test_lateness_comes_from_scheduled_starts_only_and_is_never_negative() -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    bus.publish(started("a", 100.25, scheduled=100.0, n=1))
    bus.publish(started("a", 200.0, scheduled=None, n=2))  # a manual fire: no lateness
    bus.publish(started("a", 299.5, scheduled=300.0, n=3))  # clocks disagree: 0, not -0.5
    bus.publish(started("a", 402.0, scheduled=400.0, n=4))
    found = samples(metrics)
    assert value(found, "otai_fire_lateness_seconds_count", runner="a") == 3
    assert value(found, "otai_fire_lateness_seconds_sum", runner="a") == 2.25
    assert value(found, "otai_fire_lateness_seconds_bucket", runner="a", le="0.001") == 1
    assert value(found, "otai_fire_lateness_seconds_bucket", runner="a", le="0.5") == 2
    assert value(found, "otai_fire_lateness_seconds_bucket", runner="a", le="1.0") == 2
    assert value(found, "otai_fire_lateness_seconds_bucket", runner="a", le="5.0") == 3


def test_running_is_one_between_start_and_end_and_configured_runners_start_at_zero() -> None:
    bus = EventBus()
    metrics = Metrics(bus, runner_ids=["a", "b"])
    assert series(samples(metrics), "otai_runner_running") == {
        frozenset({("runner", "a")}): 0.0,
        frozenset({("runner", "b")}): 0.0,
    }
    bus.publish(started("a", 1.0))
    assert value(samples(metrics), "otai_runner_running", runner="a") == 1
    assert value(samples(metrics), "otai_runner_running", runner="b") == 0
    bus.publish(finished("a", 0.1))
    assert value(samples(metrics), "otai_runner_running", runner="a") == 0
    bus.publish(started("b", 2.0))
    bus.publish(RunCancelled(**ended_kwargs("b", RunOutcome.CANCELLED, 0.2, 1)))  # type: ignore[arg-type]
    bus.publish(started("c", 3.0))  # not configured: appears once it runs
    found = samples(metrics)
    assert value(found, "otai_runner_running", runner="b") == 0
    assert value(found, "otai_runner_running", runner="c") == 1


def test_skipped_and_missed_fires_are_counted_by_reason() -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    for reason in (SkipReason.RUNNING, SkipReason.RUNNING, SkipReason.QUEUE_FULL):
        bus.publish(RunSkipped(runner="a", trigger="tick", reason=reason, running_for=1.0))
    bus.publish(RunSkipped(runner="b", trigger=None, reason=SkipReason.STOPPING, queued=True))
    bus.publish(RunMissed(runner="a", trigger="tick", count=3, late=12.0))
    bus.publish(RunMissed(runner="a", trigger="tick", count=2, late=600.0, reason="stopped"))
    bus.publish(RunMissed(runner="a", trigger="tick", count=1, late=20.0))
    found = samples(metrics)
    assert series(found, "otai_skipped_fires_total") == {
        frozenset({("runner", "a"), ("reason", "running")}): 2.0,
        frozenset({("runner", "a"), ("reason", "queue_full")}): 1.0,
        frozenset({("runner", "b"), ("reason", "stopping")}): 1.0,
    }
    assert series(found, "otai_missed_fires_total") == {
        frozenset({("runner", "a"), ("reason", "late")}): 4.0,
        frozenset({("runner", "a"), ("reason", "stopped")}): 2.0,
    }
    assert series(found, "otai_runs_total") == {}  # a skipped fire is no run


# -- actions and decisions -------------------------------------------------------------------

TICKET = "T-4711"
NOTE = "Dear customer, your invoice 0815 is attached"
URL = "https://hooks.example.com/notify?customer=alice"


def test_actions_and_decisions_of_ended_runs_are_counted_without_ticket_data() -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    real = (
        Action.ticket_updated(TICKET, "zammad", {"queue": ("Incoming", "Billing")}),
        Action.ticket_updated("T-4712", "zammad", {"priority": ("low", "high")}),
        Action.note_added(TICKET, "zammad", NOTE, note_id="n-1"),
        Action.ticket_created("T-9000", "otobo", "alice@example.com cannot log in"),
        Action.http_request("post", URL, 200),
        dataclasses.replace(Action.note_added(TICKET, "zammad", NOTE), dry_run=True),
    )
    decisions = (
        Decision(model="queue-bert", label="Billing", confidence=0.95, ticket_id=TICKET),
        Decision(model="queue-bert", label="IT", confidence=0.85, ticket_id="T-4712"),
        Decision(
            model="queue-bert",
            label="Sales",
            confidence=0.35,
            ticket_id="T-4713",
            below_threshold=True,
            used="Review",
        ),
        Decision(model="prio-svm", label="high", confidence=0.55, ticket_id=TICKET),
    )
    bus.publish(finished("a", 1.0, actions=real, decisions=decisions))
    # A dry run's actions changed nothing and are not counted; its decisions are.
    bus.publish(
        finished(
            "a",
            1.0,
            n=2,
            dry_run=True,
            actions=(Action.ticket_updated(TICKET, "zammad", {"queue": ("A", "B")}),),
            decisions=(Decision(model="prio-svm", label="low", confidence=0.15),),
        )
    )
    # A failed run's actions did happen.
    bus.publish(
        RunFailed(
            **ended_kwargs("a", RunOutcome.FAILED, 1.0, 3),  # type: ignore[arg-type]
            actions=(Action.note_added("T-4714", None, "half done"),),
        )
    )
    found = samples(metrics)
    assert series(found, "otai_ticket_actions_total") == {
        frozenset({("system", "zammad"), ("action", "ticket_updated")}): 2.0,
        frozenset({("system", "zammad"), ("action", "note_added")}): 1.0,
        frozenset({("system", "otobo"), ("action", "ticket_created")}): 1.0,
        frozenset({("system", ""), ("action", "http_request")}): 1.0,
        frozenset({("system", ""), ("action", "note_added")}): 1.0,
    }
    assert series(found, "otai_classifications_total") == {
        frozenset({("model", "queue-bert"), ("outcome", "confident")}): 2.0,
        frozenset({("model", "queue-bert"), ("outcome", "below_threshold")}): 1.0,
        frozenset({("model", "prio-svm"), ("outcome", "confident")}): 2.0,
    }
    assert value(found, "otai_classification_confidence_count", model="queue-bert") == 3
    total = value(found, "otai_classification_confidence_sum", model="queue-bert")
    assert total is not None
    assert math.isclose(total, 2.15)
    assert value(found, "otai_classification_confidence_bucket", model="queue-bert", le="0.4") == 1
    assert value(found, "otai_classification_confidence_bucket", model="queue-bert", le="0.9") == 2
    assert value(found, "otai_classification_confidence_bucket", model="queue-bert", le="1.0") == 3
    assert value(found, "otai_classification_confidence_bucket", model="prio-svm", le="0.2") == 1

    label_values = {v for (_, labels) in found for _, v in labels}
    for secret in (TICKET, "T-4712", "T-9000", NOTE, URL, "alice", "Billing", "Review", "n-1"):
        assert not any(secret in v for v in label_values), secret


async def test_helpdesk_requests_are_counted_from_a_real_adapter_call() -> None:
    # A real HTTP server on loopback answers a Zammad adapter: one 200, then one 500 that is
    # retried into a 200, then a refused connection counted as status 0.
    import socket

    from tests.support.http_server import HttpServer, Reply

    from open_ticket_ai import TicketSystemError
    from open_ticket_ai.runtime.service_lifecycle import ServicesOpen
    from open_ticket_ai.tickets.adapters.zammad import ZammadParams, ZammadTicketSystem

    bus = EventBus()
    metrics = Metrics(bus)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nobody listens there
    with HttpServer() as server:
        server.respond("/api/v1/tickets/7", Reply(200, json={"id": 7}))
        server.respond("/api/v1/tickets/8", Reply(500, text="busy"), Reply(200, json={"id": 8}))
        system = ZammadTicketSystem(
            ZammadParams(url=server.url, token="t", retries=1, retry_backoff=0.0), id="desk"
        )
        lost = ZammadTicketSystem(ZammadParams(url=gone, token="t", retries=0), id="lost")
        async with ServicesOpen([system, lost], bus):
            assert system.publish is not None
            await system._client.request("GET", "/tickets/7")  # type: ignore[union-attr]
            await system._client.request("GET", "/tickets/8")  # type: ignore[union-attr]
            with pytest.raises(TicketSystemError):
                await lost._client.request("GET", "/tickets/9")  # type: ignore[union-attr]
    found = samples(metrics)
    assert value(found, "otai_helpdesk_requests_total", system="desk", status="200") == 2
    assert value(found, "otai_helpdesk_requests_total", system="desk", status="500") == 1
    assert value(found, "otai_helpdesk_requests_total", system="lost", status="0") == 1
    assert value(found, "otai_helpdesk_request_duration_seconds_count", system="desk") == 3
    metrics.close()


# -- webhooks --------------------------------------------------------------------------------


def served(path: str, status: int, method: str = "POST") -> HttpRequestServed:
    return HttpRequestServed(
        method=method, path=path, status=status, client="203.0.113.9", duration=0.01
    )


def test_webhook_requests_are_counted_by_trigger_and_status() -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    bus.publish(served("/hooks/github", 202))
    bus.publish(served("/hooks/github", 202))
    bus.publish(WebhookUnauthorized(trigger="github", client="203.0.113.9", reason="bad sig"))
    bus.publish(served("/hooks/github", 401))  # the 401's own request: counted once
    bus.publish(HttpRequestFailed(method="POST", path="/hooks/github", error=ValueError("x")))
    bus.publish(served("/hooks/github", 500))
    bus.publish(served("/hooks/form%2Dintake/", 200))
    bus.publish(served("/hooks/github", 405, method="GET"))
    bus.publish(served("/hooks/no-such-hook-3f9a", 404))  # unknown ids never become labels
    bus.publish(served("/health", 200, method="GET"))
    bus.publish(served("/runners/a/fire", 202))
    bus.publish(served("/hooks/github/extra", 404))
    bus.publish(served("?", 400))
    assert series(samples(metrics), "otai_webhook_requests_total") == {
        frozenset({("trigger", "github"), ("status", "202")}): 2.0,
        frozenset({("trigger", "github"), ("status", "401")}): 1.0,
        frozenset({("trigger", "github"), ("status", "500")}): 1.0,
        frozenset({("trigger", "form-intake"), ("status", "200")}): 1.0,
        frozenset({("trigger", ""), ("status", "405")}): 1.0,
        frozenset({("trigger", ""), ("status", "404")}): 1.0,
    }


def test_webhook_trigger_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EventBus()
    known = Metrics(bus, webhook_triggers=["github"])
    monkeypatch.setattr(metrics_module, "MAX_WEBHOOK_TRIGGERS", 2)
    capped = Metrics(bus)
    for hook in ("github", "gitlab", "jira", "github", "extra"):
        bus.publish(served(f"/hooks/{hook}", 202))
    assert series(samples(known), "otai_webhook_requests_total") == {
        frozenset({("trigger", "github"), ("status", "202")}): 2.0,
        frozenset({("trigger", ""), ("status", "202")}): 3.0,
    }
    assert series(samples(capped), "otai_webhook_requests_total") == {
        frozenset({("trigger", "github"), ("status", "202")}): 2.0,
        frozenset({("trigger", "gitlab"), ("status", "202")}): 1.0,
        frozenset({("trigger", ""), ("status", "202")}): 2.0,
    }


# -- the instance ----------------------------------------------------------------------------


def test_two_instances_share_no_state() -> None:
    first_bus, second_bus = EventBus(), EventBus()
    first = Metrics(first_bus, runner_ids=["a"])
    second = Metrics(second_bus, runner_ids=["z"])
    also_first = Metrics(first_bus, runner_ids=["a"])  # same names, same bus: no clash
    first_bus.publish(started("a", 1.0))
    first_bus.publish(finished("a", 0.5))
    first_bus.publish(RunSkipped(runner="a", trigger=None, reason=SkipReason.RUNNING))
    for metrics in (first, also_first):
        found = samples(metrics)
        assert value(found, "otai_runs_total", runner="a", status="succeeded") == 1
        assert value(found, "otai_skipped_fires_total", runner="a", reason="running") == 1
        assert value(found, "otai_runner_running", runner="z") is None
    found = samples(second)
    assert series(found, "otai_runs_total") == {}
    assert series(found, "otai_skipped_fires_total") == {}
    assert series(found, "otai_run_duration_seconds_count") == {}
    assert series(found, "otai_runner_running") == {frozenset({("runner", "z")}): 0.0}
    assert first.registry is not second.registry


def test_close_unsubscribes_and_keeps_the_values() -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    assert "metrics" in bus.subscribers
    bus.publish(finished("a", 0.5))
    metrics.close()
    metrics.close()
    assert "metrics" not in bus.subscribers
    bus.publish(finished("a", 0.5, n=2))
    assert value(samples(metrics), "otai_runs_total", runner="a", status="succeeded") == 1


def test_a_malformed_event_is_not_counted_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    metrics = Metrics(bus)
    caplog.set_level("WARNING")
    bad = finished("a", 0.5, outcome="succeeded")  # a str, not a RunOutcome: no .value
    metrics(bad)  # called directly: the bus would hide a raise
    bus.publish(bad)
    bus.publish(finished("a", 0.5, n=2))
    assert metrics.failures == 2
    assert [r.message for r in caplog.records] == ["metrics: could not count run.finished"]
    assert value(samples(metrics), "otai_runs_total", runner="a", status="succeeded") == 1


def test_build_info_and_content_type() -> None:
    metrics = Metrics(EventBus())
    try:
        version = importlib.metadata.version("ticketflow-orchestrator")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    assert series(samples(metrics), "otai_build_info") == {frozenset({("version", version)}): 1.0}
    assert CONTENT_TYPE.startswith("text/plain; version=")
    assert metrics.render().startswith(b"# HELP ")


# -- a real orchestrator ---------------------------------------------------------------------


@pytest.mark.virtual_clock
async def test_an_orchestrators_runs_are_counted_exactly(virtual_clock: VirtualClockLoop) -> None:
    config = """
        runners:
          - id: good
            on: [{id: fast, params: {milliseconds: 50}}]
            run: {id: g, use: ExpressionPipe, params: {expression: 1}}
          - id: bad
            on: [fast]
            run: {id: b, use: ExpressionPipe, params: {expression: "{{ fail('no') }}"}}
          - id: idle
            on: [{id: never, params: {hours: 1}}]
            run: {id: i, use: ExpressionPipe, params: {expression: 1}}
        """
    orch = Orchestrator(
        build(parse_config(textwrap.dedent(config), "test.yml")),
        wall_clock=virtual_clock.wall,
        log=False,
    )
    metrics = Metrics(orch.bus, runner_ids=orch.runner_ids)
    main = asyncio.create_task(orch.run())
    await asyncio.sleep(0.32)  # fires at 0.05, 0.10, ... 0.30
    orch.request_stop()
    assert await main == 0
    found = samples(metrics)
    assert series(found, "otai_runs_total") == {
        frozenset({("runner", "good"), ("status", "succeeded")}): 6.0,
        frozenset({("runner", "bad"), ("status", "failed")}): 6.0,
    }
    assert orch.runners["good"].stats.runs == orch.runners["bad"].stats.failures == 6
    assert value(found, "otai_run_duration_seconds_count", runner="bad") == 6
    assert value(found, "otai_fire_lateness_seconds_count", runner="good") == 6
    assert value(found, "otai_fire_lateness_seconds_count", runner="idle") is None
    assert series(found, "otai_runner_running") == {
        frozenset({("runner", "good")}): 0.0,
        frozenset({("runner", "bad")}): 0.0,
        frozenset({("runner", "idle")}): 0.0,
    }
    assert metrics.failures == 0
