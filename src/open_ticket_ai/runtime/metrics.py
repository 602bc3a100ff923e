"""Metrics: Prometheus metrics kept from the runtime's events, rendered in the text format.

A plain subscriber of the :class:`~open_ticket_ai.runtime.events.EventBus`, in the style of
:class:`~open_ticket_ai.runtime.stats.RunnerStats`: each event is counted inline, on the
publisher's thread, in a few dictionary look-ups. Every :class:`Metrics` has its own
``CollectorRegistry`` (never prometheus_client's global one), so two orchestrators in one
process, or in one test, never share a series.

Which event feeds which metric:

- ``otai_runs_total{runner,status}`` (status: the :class:`RunOutcome` value),
  ``otai_run_duration_seconds{runner}``: every :class:`RunEnded` (finished, failed, timed out,
  cancelled, stuck; a cancelled or stuck run's duration is how long it held its runner);
- ``otai_fire_lateness_seconds{runner}``: :class:`RunStarted` with a ``scheduled`` time
  (time triggers), ``started - scheduled`` clamped at 0;
- ``otai_runner_running{runner}``: 1 from :class:`RunStarted` to the run's :class:`RunEnded`;
- ``otai_missed_fires_total{runner,reason}``: :class:`RunMissed` (by its ``count``);
- ``otai_skipped_fires_total{runner,reason}``: :class:`RunSkipped` (the :class:`SkipReason`);
- ``otai_ticket_actions_total{system,action}``: the ``actions`` of each :class:`RunEnded`
  (action: the :class:`ActionKind` value; system "" when the action names none). Dry-run
  actions (``Action.dry_run``, or a run's ``dry_run``) are **not counted**: they changed
  nothing; the dry run itself still counts in ``otai_runs_total``;
- ``otai_classifications_total{model,outcome}`` (``confident`` or ``below_threshold``) and
  ``otai_classification_confidence{model}``: the ``decisions`` of each :class:`RunEnded`,
  dry runs included (the model did classify);
- ``otai_helpdesk_requests_total{system,status}`` (status 0: no answer) and
  ``otai_helpdesk_request_duration_seconds{system}``: :class:`HelpdeskRequest`, one per
  attempt a ticket system adapter sends (the system label is the service id);
- ``otai_webhook_requests_total{trigger,status}``: :class:`HttpRequestServed` for
  ``/hooks/{trigger}`` (one per answered request; :class:`WebhookUnauthorized` and
  :class:`HttpRequestFailed` are each followed by that request's ``HttpRequestServed``, so
  they are not counted again). The trigger label is "" for an id that is not a webhook
  trigger: one not in ``webhook_triggers`` when that is given, else one answered 404 or 405
  (the routes answer those before, or instead of, finding a trigger), and any beyond the
  first :data:`MAX_WEBHOOK_TRIGGERS` ids, so that clients cannot grow the label set;
- ``otai_build_info{version}`` = 1.

Labels hold runner, trigger, system and model ids, reasons, kinds and status codes: never a
ticket id, a text, a URL or a user name.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

from open_ticket_ai.runtime.events import (
    Event,
    EventBus,
    HelpdeskRequest,
    HttpRequestServed,
    RunCancelled,
    RunEnded,
    RunFailed,
    RunFinished,
    RunMissed,
    RunSkipped,
    RunStarted,
    RunStuck,
)

__all__ = [
    "CONFIDENCE_BUCKETS",
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "LATENESS_BUCKETS",
    "MAX_WEBHOOK_TRIGGERS",
    "OBSERVED",
    "Metrics",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of :meth:`Metrics.render`'s output."""

DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

MAX_WEBHOOK_TRIGGERS = 100
"""Distinct ``trigger`` labels of ``otai_webhook_requests_total`` at most (without
``webhook_triggers``); later ids are counted under ""."""

OBSERVED: tuple[type[Event], ...] = (
    RunStarted,
    RunEnded,
    RunSkipped,
    RunMissed,
    HttpRequestServed,
    HelpdeskRequest,
)
"""The events :class:`Metrics` subscribes to."""

_UNKNOWN_TRIGGER_STATUSES = frozenset({404, 405})

log = logging.getLogger("open_ticket_ai")


def _version() -> str:
    try:
        return importlib.metadata.version("ticketflow-orchestrator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Prometheus metrics of one orchestrator, kept from the events on ``bus``.

    Subscribes itself at once; :meth:`close` ends the subscription. ``runner_ids`` are the
    configured runners: each gets ``otai_runner_running`` 0 before it first runs.
    ``webhook_triggers``, when given, are the only ids the ``trigger`` label of
    ``otai_webhook_requests_total`` takes (others count under ""). See the module's
    docstring for which event feeds which metric."""

    def __init__(
        self,
        bus: EventBus,
        *,
        runner_ids: Iterable[str] = (),
        webhook_triggers: Iterable[str] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        """This instance's own registry (what :meth:`render` renders)."""
        registry = self.registry
        self.runs = Counter(
            "otai_runs_total",
            "Runs that ended, by outcome.",
            ("runner", "status"),
            registry=registry,
        )
        self.run_duration = Histogram(
            "otai_run_duration_seconds",
            "How long runs took, from start to end event.",
            ("runner",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.fire_lateness = Histogram(
            "otai_fire_lateness_seconds",
            "How late scheduled fires started their run.",
            ("runner",),
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.missed = Counter(
            "otai_missed_fires_total",
            "Fires of time triggers that passed without a run.",
            ("runner", "reason"),
            registry=registry,
        )
        self.skipped = Counter(
            "otai_skipped_fires_total",
            "Fires that did not start a run.",
            ("runner", "reason"),
            registry=registry,
        )
        self.running = Gauge(
            "otai_runner_running",
            "1 while the runner runs, else 0.",
            ("runner",),
            registry=registry,
        )
        self.actions = Counter(
            "otai_ticket_actions_total",
            "Changes runs made outside the process (not dry runs).",
            ("system", "action"),
            registry=registry,
        )
        self.classifications = Counter(
            "otai_classifications_total",
            "Classifications, confident or below threshold.",
            ("model", "outcome"),
            registry=registry,
        )
        self.confidence = Histogram(
            "otai_classification_confidence",
            "The confidence of classifications.",
            ("model",),
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.helpdesk = Counter(
            "otai_helpdesk_requests_total",
            "Requests ticket systems sent to their helpdesk (each attempt), by answer status"
            " (0: no answer).",
            ("system", "status"),
            registry=registry,
        )
        self.helpdesk_duration = Histogram(
            "otai_helpdesk_request_duration_seconds",
            "How long helpdesk requests took.",
            ("system",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.webhooks = Counter(
            "otai_webhook_requests_total",
            "Requests to webhook triggers, by answer status.",
            ("trigger", "status"),
            registry=registry,
        )
        self.build_info = Gauge(
            "otai_build_info",
            "The running open-ticket-ai version (always 1).",
            ("version",),
            registry=registry,
        )
        self.build_info.labels(version=_version()).set(1)
        self._known_triggers: Collection[str] | None = (
            frozenset(webhook_triggers) if webhook_triggers is not None else None
        )
        self._seen_triggers: set[str] = set()
        # Label children by label values: a dict look-up instead of ``labels()`` per event.
        self._children: dict[tuple[Any, ...], Any] = {}
        for runner in runner_ids:
            self._child(self.running, runner).set(0)
        handle_ended = self._ended
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            RunStarted: self._started,
            RunFinished: handle_ended,
            RunFailed: handle_ended,
            RunCancelled: handle_ended,
            RunStuck: handle_ended,
            RunSkipped: self._skipped,
            RunMissed: self._missed,
            HttpRequestServed: self._served,
            HelpdeskRequest: self._helpdesk,
        }
        self.failures = 0
        """Events this subscriber could not count (logged the first time only)."""
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(
            self, *OBSERVED, name="metrics"
        )

    def close(self) -> None:
        """End the subscription (safe to call again); the metrics keep their values."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return _generate_latest(self.registry)

    # -- counting ------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Count one event; never raises."""
        try:
            handler = self._handlers.get(type(event))
            if handler is None:
                if not isinstance(event, RunEnded):
                    return
                # A subclass of RunEnded this module does not name: remembered for next time.
                self._handlers[type(event)] = self._ended
                self._ended(event)
                return
            handler(event)
        except Exception:
            self.failures += 1
            if self.failures == 1:
                log.warning("metrics: could not count %s", event.name, exc_info=True)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _started(self, event: RunStarted) -> None:
        self._child(self.running, event.runner).set(1)
        scheduled = event.scheduled
        if scheduled is not None:
            late = event.started - scheduled
            self._child(self.fire_lateness, event.runner).observe(late if late > 0 else 0.0)

    def _ended(self, event: RunEnded) -> None:
        runner = event.runner
        child = self._child
        child(self.running, runner).set(0)
        child(self.runs, runner, event.outcome.value).inc()
        child(self.run_duration, runner).observe(event.duration)
        if event.actions and not event.dry_run:
            for action in event.actions:
                if not action.dry_run:
                    child(self.actions, action.system or "", action.kind.value).inc()
        for decision in event.decisions:
            model = decision.model
            outcome = "below_threshold" if decision.below_threshold else "confident"
            child(self.classifications, model, outcome).inc()
            child(self.confidence, model).observe(decision.confidence)

    def _skipped(self, event: RunSkipped) -> None:
        self._child(self.skipped, event.runner, event.reason.value).inc()

    def _missed(self, event: RunMissed) -> None:
        self._child(self.missed, event.runner, event.reason).inc(event.count)

    def _helpdesk(self, event: HelpdeskRequest) -> None:
        self._child(self.helpdesk, event.system, str(event.status)).inc()
        self._child(self.helpdesk_duration, event.system).observe(event.duration)

    def _served(self, event: HttpRequestServed) -> None:
        path = event.path
        if not path.startswith("/hooks/"):
            return
        parts = path.strip("/").split("/")
        if len(parts) != 2:
            return
        status = event.status
        self._child(
            self.webhooks, self._trigger_label(unquote(parts[1]), status), str(status)
        ).inc()

    def _trigger_label(self, trigger: str, status: int) -> str:
        known = self._known_triggers
        if known is not None:
            return trigger if trigger in known else ""
        if status in _UNKNOWN_TRIGGER_STATUSES or not trigger:
            return ""
        seen = self._seen_triggers
        if trigger in seen:
            return trigger
        if len(seen) >= MAX_WEBHOOK_TRIGGERS:
            return ""
        seen.add(trigger)
        return trigger
