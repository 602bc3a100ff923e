"""WebhookTrigger: fires its runners when an authenticated POST reaches ``/hooks/{id}``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar, Literal

from pydantic import Field

from open_ticket_ai import EventTrigger, ParamsModel, TriggerHost
from open_ticket_ai.http.messages import (
    HttpRequest,
    HttpResponse,
    bearer_matches,
    error_response,
    fire_response,
)

__all__ = ["SIGNATURE_HEADER", "WebhookParams", "WebhookTrigger"]

SIGNATURE_HEADER = "x-signature-256"


class WebhookParams(ParamsModel):
    """``secret`` (write ``"{{ env.OTAI_... }}"``), ``auth``, ``json``, ``max_body_bytes``."""

    secret: str = Field(min_length=1)
    auth: Literal["bearer", "hmac-sha256"] = "bearer"
    """``bearer``: ``Authorization: Bearer <secret>``. ``hmac-sha256``: ``X-Signature-256:
    sha256=<hex HMAC-SHA256 of the raw body keyed with the secret>`` (GitHub's scheme)."""
    json_body: bool = Field(True, alias="json")
    """The body must be JSON (400 otherwise) and is the payload; false: the body as text."""
    max_body_bytes: int | None = Field(default=None, ge=1)
    """A body limit below the listener's ``orchestrator.http.max_body_bytes``."""


class WebhookTrigger(EventTrigger[WebhookParams]):
    """Fires every runner listing it when ``POST /hooks/{id}`` arrives with valid credentials.

    Unauthenticated requests get 401 and fire nothing. The payload (the parsed JSON body) is
    ``trigger.payload`` in the runners' templates. The answer is 202 with the runs started
    and the runners that refused (busy); 409 when every runner refused."""

    needs_http: ClassVar[bool] = True

    @property
    def max_body_bytes(self) -> int | None:
        return self.params.max_body_bytes

    def check_headers(self, request: HttpRequest) -> HttpResponse | None:
        """Refuse before the body is read: a bad bearer token, or no signature at all."""
        if self.params.auth == "bearer":
            if not bearer_matches(request.headers.get("authorization"), self.params.secret):
                return self._unauthorized(request, "a valid 'Authorization: Bearer' is required")
        elif not request.headers.get(SIGNATURE_HEADER, "").startswith("sha256="):
            return self._unauthorized(request, "an 'X-Signature-256: sha256=...' is required")
        return None

    def handle_http(self, request: HttpRequest, host: TriggerHost) -> HttpResponse:
        if self.params.auth == "hmac-sha256" and not self._signed(request):
            return self._unauthorized(request, "the X-Signature-256 does not match the body")
        payload: Any
        if self.params.json_body:
            try:
                payload = request.json()
            except ValueError as exc:
                return error_response(400, f"the body is not JSON: {exc}")
        else:
            payload = request.body.decode("utf-8", "replace")
        return fire_response(self.id, host.fire(payload))

    def _signed(self, request: HttpRequest) -> bool:
        given = request.headers.get(SIGNATURE_HEADER, "").removeprefix("sha256=").strip().lower()
        wanted = hmac.new(self.params.secret.encode(), request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), wanted.encode())

    def _unauthorized(self, request: HttpRequest, message: str) -> HttpResponse:
        # The listener publishes ``webhook.unauthorized`` for every 401 of a hook.
        headers = {"www_authenticate": "Bearer"} if self.params.auth == "bearer" else {}
        return error_response(401, message, **headers)
