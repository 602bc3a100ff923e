"""What the HTTP listener's routes do: webhooks, manual fires, health.

:class:`Routes` maps a request (head only) to an answer, or to a :class:`ReadBody` that says
how much body to read and what answers it; the listener owns the wire.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.templates import TemplateEngine, is_template
from open_ticket_ai.core.triggers.base import CallbackHost
from open_ticket_ai.http.messages import (
    HttpRequest,
    HttpResponse,
    HttpTrigger,
    bearer_matches,
    error_response,
    fire_response,
    json_response,
)
from open_ticket_ai.runtime.events import WebhookReplayed, WebhookUnauthorized

if TYPE_CHECKING:
    from open_ticket_ai.runtime.control import Control

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
    """``POST /hooks/{trigger_id}``, ``POST /runners/{runner_id}/fire``, ``GET /health``,
    ``GET /status``."""

    def __init__(self, config: HttpListenerConfig, control: Control) -> None:
        self.config = config
        self.control = control
        self._hooks: dict[str, tuple[HttpTrigger, ReadBody]] = {}
        """Each webhook trigger met so far, and how its bodies are read and answered."""
        self.token = resolve_token(config.token, control.env)

    def route(self, request: HttpRequest) -> HttpResponse | ReadBody:
        """The answer from the request's head, or how to read its body and answer then."""
        parts = request.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "hooks":
            if request.method != "POST":
                return error_response(405, "use POST", allow="POST")
            return self._hook(parts[1], request)
        if parts == ["health"]:
            if request.method != "GET":
                return error_response(405, "use GET", allow="GET")
            return json_response(200, self.health())
        if parts == ["status"]:
            if request.method != "GET":
                return error_response(405, "use GET", allow="GET")
            return json_response(200, self.status())
        if len(parts) == 3 and parts[0] == "runners" and parts[2] == "fire":
            if request.method != "POST":
                return error_response(405, "use POST", allow="POST")
            return self._manual(parts[1], request)
        return error_response(404, f"no route {request.path}")

    def _hook(self, trigger_id: str, request: HttpRequest) -> HttpResponse | ReadBody:
        found = self._hooks.get(trigger_id)
        if found is None:
            # Protocol isinstance checks are slow: check each trigger once.
            candidate = self.control.trigger(trigger_id)
            if not isinstance(candidate, HttpTrigger):
                return error_response(404, f"no webhook trigger {trigger_id!r}")
            fire = partial(self.control.fire, trigger_id)
            host = CallbackHost(fire, self.control.subscribe_run_finished)
            limit = min(
                self.config.max_body_bytes,
                candidate.max_body_bytes or self.config.max_body_bytes,
            )
            read = ReadBody(limit, partial(self._handle_hook, trigger_id, candidate, host))
            found = self._hooks[trigger_id] = candidate, read
        trigger, read = found
        refused = trigger.check_headers(request)
        if refused is not None:
            return self._checked(trigger_id, request, refused)
        return read

    def _handle_hook(
        self, trigger_id: str, trigger: HttpTrigger, host: CallbackHost, request: HttpRequest
    ) -> HttpResponse:
        return self._checked(trigger_id, request, trigger.handle_http(request, host))

    def _checked(
        self, trigger_id: str, request: HttpRequest, response: HttpResponse
    ) -> HttpResponse:
        """Publish ``webhook.unauthorized`` for a hook's 401, ``webhook.replayed`` for its 409
        of a signature seen before."""
        if response.status != 401 and response.status != 409:
            return response
        body = response.body if isinstance(response.body, dict) else {}
        reason = str(body.get("error") or "refused")
        if response.status == 401:
            self.control.bus.publish(
                WebhookUnauthorized(trigger=trigger_id, client=request.client, reason=reason)
            )
        elif response.status == 409 and body.get("replayed") is True:
            self.control.bus.publish(
                WebhookReplayed(trigger=trigger_id, client=request.client, reason=reason)
            )
        return response

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
        if runner_id not in self.control.runner_ids:
            known = ", ".join(self.control.runner_ids) or "none"
            return error_response(404, f"no runner {runner_id!r} (runners: {known})")
        return ReadBody(self.config.max_body_bytes, partial(self._fire_runner, runner_id))

    def _fire_runner(self, runner_id: str, request: HttpRequest) -> HttpResponse:
        payload: Any = None
        if request.body.strip():
            try:
                payload = request.json()
            except ValueError as exc:
                return error_response(400, f"the body is not JSON: {exc}")
        outcome = self.control.fire_runner(runner_id, payload)
        return fire_response("manual", [outcome])

    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "runners": {id: {running, run_id, runs, failures, ...}}}``."""
        now = time.time()
        runners = {id: state.as_json(now) for id, state in self.control.health().items()}
        return {"status": "ok", "runners": runners}

    def status(self) -> dict[str, Any]:
        """What ``otai status`` shows of a running instance: ``pid``, and per runner its
        health, its last run (``last_outcome``, ``last_started``, ``last_duration_s``) and
        ``next_fire`` (POSIX seconds, or None)."""
        now = time.time()
        fires = self.control.next_fires()
        runners: dict[str, Any] = {}
        for id, state in self.control.health().items():
            body = state.as_json(now)
            body["last_outcome"] = state.last_outcome.value if state.last_outcome else None
            body["last_started"] = state.last_started
            body["last_duration_s"] = state.last_duration
            body["next_fire"] = fires.get(id)
            body["paused"] = state.paused
            runners[id] = body
        return {"pid": os.getpid(), "runners": runners}
