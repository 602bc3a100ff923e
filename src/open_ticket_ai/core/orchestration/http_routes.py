"""What the HTTP listener's routes do: webhooks, manual fires, health.

:class:`Routes` maps a request (head only) to an answer, or to a :class:`ReadBody` that says
how much body to read and what answers it; the listener owns the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.orchestration.http_messages import (
    HttpRequest,
    HttpResponse,
    HttpTrigger,
    bearer_matches,
    error_response,
    fire_response,
    json_response,
)
from open_ticket_ai.core.orchestration.trigger import CallbackHost
from open_ticket_ai.core.templates import TemplateEngine, is_template

if TYPE_CHECKING:
    from open_ticket_ai.core.orchestration.orchestrator import Orchestrator

__all__ = ["ReadBody", "Routes", "resolve_token"]


def resolve_token(token: str | None, env: Mapping[str, str]) -> str | None:
    """``orchestrator.http.token``, rendered with ``env`` when it is a template (so that it
    can stay out of the file: ``"{{ env.OTAI_TRIGGER_TOKEN }}"``). An empty token is none:
    manual fires are then disabled. Raises TemplateError naming the setting."""
    if token is None or not is_template(token):
        return token or None
    rendered = TemplateEngine().compile(token, "orchestrator.http.token").render({"env": env})
    return str(rendered) if rendered not in (None, "") else None


@dataclass(frozen=True)
class ReadBody:
    """A route that needs the body: read at most ``limit`` bytes, then ``handle`` it."""

    limit: int
    handle: Callable[[HttpRequest], HttpResponse]


class Routes:
    """``POST /hooks/{trigger_id}``, ``POST /runners/{runner_id}/fire``, ``GET /health``."""

    def __init__(self, config: HttpListenerConfig, orchestrator: Orchestrator) -> None:
        self.config = config
        self.orchestrator = orchestrator
        self._hooks: dict[str, tuple[HttpTrigger, CallbackHost]] = {}
        self.token = resolve_token(config.token, orchestrator.compiled.env)

    def route(self, request: HttpRequest) -> HttpResponse | ReadBody:
        """The answer from the request's head, or how to read its body and answer then."""
        parts = request.path.strip("/").split("/")
        if parts == ["health"]:
            if request.method != "GET":
                return error_response(405, "use GET", allow="GET")
            return json_response(200, self.health())
        if len(parts) == 2 and parts[0] == "hooks":
            if request.method != "POST":
                return error_response(405, "use POST", allow="POST")
            return self._hook(parts[1], request)
        if len(parts) == 3 and parts[0] == "runners" and parts[2] == "fire":
            if request.method != "POST":
                return error_response(405, "use POST", allow="POST")
            return self._manual(parts[1], request)
        return error_response(404, f"no route {request.path}")

    def _hook(self, trigger_id: str, request: HttpRequest) -> HttpResponse | ReadBody:
        found = self._hooks.get(trigger_id)
        if found is None:
            # Protocol isinstance checks are slow: check each trigger once.
            candidate = self.orchestrator.compiled.triggers.get(trigger_id)
            if not isinstance(candidate, HttpTrigger):
                return error_response(404, f"no webhook trigger {trigger_id!r}")
            fire = partial(self.orchestrator.fire, trigger_id)
            found = candidate, CallbackHost(fire, self.orchestrator.subscribe_run_finished)
            self._hooks[trigger_id] = found
        trigger, host = found
        refused = trigger.check_headers(request)
        if refused is not None:
            return refused
        limit = min(
            self.config.max_body_bytes, trigger.max_body_bytes or self.config.max_body_bytes
        )
        return ReadBody(limit, partial(trigger.handle_http, host=host))

    def _manual(self, runner_id: str, request: HttpRequest) -> HttpResponse | ReadBody:
        token = self.token
        if token is None:
            return error_response(
                403, "manual fires are disabled: set orchestrator.http.token to allow them"
            )
        if not bearer_matches(request.headers.get("authorization"), token):
            return error_response(
                401,
                "a valid 'Authorization: Bearer <token>' is required",
                www_authenticate="Bearer",
            )
        if runner_id not in self.orchestrator.runners:
            known = ", ".join(self.orchestrator.runners) or "none"
            return error_response(404, f"no runner {runner_id!r} (runners: {known})")
        return ReadBody(self.config.max_body_bytes, partial(self._fire_runner, runner_id))

    def _fire_runner(self, runner_id: str, request: HttpRequest) -> HttpResponse:
        payload: Any = None
        if request.body.strip():
            try:
                payload = request.json()
            except ValueError as exc:
                return error_response(400, f"the body is not JSON: {exc}")
        outcome = self.orchestrator.fire_runner(runner_id, payload)
        return fire_response("manual", [outcome])

    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "runners": {id: {running, run_id, runs, failures, ...}}}``."""
        runners: dict[str, Any] = {}
        for runner in self.orchestrator.runners.values():
            last = runner.last_result
            runners[runner.id] = {
                "running": runner.running,
                "run_id": runner.run_id,
                "running_for_s": round(runner.running_for, 3),
                "runs": runner.stats.runs,
                "failures": runner.stats.failures,
                "skips": runner.stats.skips,
                "last_status": last.status if last is not None else None,
            }
        return {"status": "ok", "runners": runners}
