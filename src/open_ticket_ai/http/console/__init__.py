"""The operator's console: server-rendered pages on the listener's Starlette application.

Pages (a login first): **runners** (``/``: state, triggers, next fire, last run, the last
24 hours, recent durations; fire, pause and resume), **runs** (``/runs``, ``/runs/{run_id}``),
**tickets** (``/tickets``: recent decisions and what was done) and **review** (``/review``:
decisions below their threshold, to confirm or correct). Live updates arrive as server-sent
events from the bus (``/console/events``); every page reads without JavaScript.

Reading needs a login, acting (fire, pause, resume, correct) the ``admin`` role; every form
carries a CSRF token; session cookies are HttpOnly and SameSite=Lax (and Secure with
``secure_cookies``). The ledger is read through a read-only connection in a worker thread, so
a page never blocks the runs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from open_ticket_ai.core.config.models import HttpListenerConfig
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.pipes.records import Action
from open_ticket_ai.core.secrets import SECRETS
from open_ticket_ai.http.console.auth import LoginLimiter, Users, csrf_matches, new_csrf_token
from open_ticket_ai.http.routes import resolve_token
from open_ticket_ai.runtime.events import (
    ConsoleLogin,
    ConsoleLoginFailed,
    Event,
    RunEnded,
    RunnerPaused,
    RunnerResumed,
    RunOutcome,
)
from open_ticket_ai.runtime.ledger import DecisionEntry, LedgerError, SqliteLedgerStore
from open_ticket_ai.runtime.review import CorrectionError

if TYPE_CHECKING:
    from open_ticket_ai.runtime.control import Control

__all__ = ["Console", "console_secret"]

_T = TypeVar("_T")
_HERE = Path(__file__).parent
LIVE_EVENTS = (RunEnded, RunnerPaused, RunnerResumed)
"""What the pages hear about live."""
KEEPALIVE = 15.0
"""Seconds between two comments on an idle event stream (proxies close silent ones)."""
LIVE_INTERVAL = 0.25
"""Seconds between two batches sent on one stream: ten thousand runs a second cost a page
four small batches, not ten thousand messages."""
LIVE_BACKLOG = 50
"""Events kept for a stream between two batches (the newest; a page shows fewer)."""


def console_secret(configured: str | None, env: dict[str, str] | Any) -> str:
    """The key that signs session cookies: ``console_secret`` (rendered like the token when it
    is a template), else a random one for this process."""
    secret = resolve_token(configured, env)
    return secret or secrets.token_urlsafe(32)


class Console:
    """The console's routes and what they share: users, the login limiter, live streams."""

    def __init__(self, config: HttpListenerConfig, control: Control) -> None:
        self.config = config
        self.control = control
        self.users = Users(config.console_users)
        self.limiter = LoginLimiter()
        self.secret = console_secret(config.console_secret, control.env)
        SECRETS.add([self.secret])
        self._streams: set[_Stream] = set()
        self._unsubscribe = control.bus.subscribe(self._hear, *LIVE_EVENTS, name="console")
        self.templates = Environment(
            loader=PackageLoader("open_ticket_ai.http.console", "templates"),
            autoescape=select_autoescape(("html",)),
        )
        self.templates.filters["when"] = _when
        self.templates.filters["ms"] = _ms
        self.templates.filters["duration"] = format_duration

    @property
    def middleware(self) -> list[Middleware]:
        return [
            Middleware(
                SessionMiddleware,
                secret_key=self.secret,
                session_cookie="otai_session",
                same_site="lax",
                https_only=self.config.secure_cookies,
                max_age=12 * 3600,
            )
        ]

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.runners_page),
            Route("/login", self.login_page, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/runs", self.runs_page),
            Route("/runs/{run_id}", self.run_page),
            Route("/tickets", self.tickets_page),
            Route("/review", self.review_page),
            Route("/console/events", self.events),
            Route("/console/runners/{runner}/{act}", self.runner_action, methods=["POST"]),
            Route("/console/review/{run_id}/{position:int}", self.correct, methods=["POST"]),
            Mount("/console/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
        ]

    def close(self) -> None:
        """End the subscription and every live stream (at shutdown)."""
        self._unsubscribe()
        for stream in list(self._streams):
            stream.closed = True
            stream.wake.set()

    # -- sessions -------------------------------------------------------------------------

    def _user(self, request: Request) -> tuple[str, str] | None:
        name = request.session.get("user")
        if not isinstance(name, str):
            return None
        role = self.users.role(name)
        return (name, role) if role is not None else None

    def _csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = new_csrf_token()
        return token

    def _page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        user = self._user(request)
        body = self.templates.get_template(template).render(
            user=user[0] if user else None,
            admin=bool(user and user[1] == "admin"),
            csrf=self._csrf(request),
            path=request.url.path,
            **values,
        )
        return HTMLResponse(body, status_code=status)

    def _login_first(self, request: Request) -> Response | None:
        if self._user(request) is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return None

    async def _admin_form(self, request: Request) -> tuple[str, Any] | Response:
        """The acting admin and the form, or the refusal (401, 403, 400 bad CSRF)."""
        user = self._user(request)
        form = await request.form()
        if user is None:
            return self._page(request, "message.html", 401, title="Log in first", text="")
        if not csrf_matches(request.session.get("csrf"), form.get("csrf")):
            text = "The form was too old or not from this console: reload the page and retry."
            return self._page(request, "message.html", 400, title="Refused", text=text)
        if user[1] != "admin":
            text = f"{user[0]} is a viewer; firing, pausing and correcting need an admin."
            return self._page(request, "message.html", 403, title="Not allowed", text=text)
        return user[0], form

    # -- login ----------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        target = request.query_params.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if request.method == "GET":
            return self._page(request, "login.html", next=target, error=None)
        form = await request.form()
        name = str(form.get("user", "")).strip()[:100]
        password = str(form.get("password", ""))
        client = request.client.host if request.client else ""
        if not csrf_matches(request.session.get("csrf"), form.get("csrf")):
            error = "The form was too old: try again."
            return self._page(request, "login.html", 400, next=target, error=error)
        keys = (f"client:{client}", f"user:{name}")
        if self.limiter.blocked(*keys):
            self.control.bus.publish(ConsoleLoginFailed(user=name, client=client, limited=True))
            error = "Too many failed logins: wait a few minutes, then try again."
            return self._page(request, "login.html", 429, next=target, error=error)
        if not await asyncio.to_thread(self.users.check, name, password):
            self.limiter.failed(*keys)
            self.control.bus.publish(ConsoleLoginFailed(user=name, client=client))
            error = "Wrong user name or password."
            return self._page(request, "login.html", 401, next=target, error=error)
        self.limiter.succeeded(*keys)
        request.session.clear()
        request.session["user"] = name
        request.session["csrf"] = new_csrf_token()
        self.control.bus.publish(ConsoleLogin(user=name, client=client))
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if csrf_matches(request.session.get("csrf"), form.get("csrf")):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- pages ----------------------------------------------------------------------------

    async def _read(self, query: Callable[[SqliteLedgerStore], _T]) -> _T | None:
        """``query`` on a read-only connection to the ledger, in a worker thread; None
        without a ledger (or before its first run)."""
        path = self.control.ledger_path()
        if path is None:
            return None

        def run() -> _T | None:
            try:
                store = SqliteLedgerStore(path, readonly=True)
            except LedgerError:
                return None
            try:
                return query(store)
            finally:
                store.close()

        return await asyncio.to_thread(run)

    async def runners_page(self, request: Request) -> Response:
        if (refused := self._login_first(request)) is not None:
            return refused
        since = time.time() - 86400
        counts, recent = (
            await self._read(lambda s: (s.counts(since=since), s.runs(limit=200)))
        ) or ({}, [])
        durations: dict[str, list[float]] = {}
        for record in reversed(recent):
            durations.setdefault(record.runner, []).append(record.duration)
        health = self.control.health()
        fires = self.control.next_fires()
        rows = []
        for runner_id, state in health.items():
            per = counts.get(runner_id, {})
            rows.append(
                {
                    "id": runner_id,
                    "state": state,
                    "triggers": self.control.triggers_of(runner_id),
                    "next_fire": fires.get(runner_id),
                    "runs": sum(per.values()),
                    "failures": per.get(RunOutcome.FAILED, 0) + per.get(RunOutcome.TIMED_OUT, 0),
                    "chart": _sparkline(durations.get(runner_id, [])[-30:]),
                }
            )
        return self._page(request, "runners.html", runners=rows)

    async def runs_page(self, request: Request) -> Response:
        if (refused := self._login_first(request)) is not None:
            return refused
        params = request.query_params
        runner = params.get("runner") or None
        status = params.get("status") or None
        since_text = params.get("since") or ""
        error = None
        outcome: RunOutcome | None = None
        since: float | None = None
        if status:
            try:
                outcome = RunOutcome(status)
            except ValueError:
                error = f"unknown status {status!r}"
        if since_text:
            from open_ticket_ai.core.durations import parse_duration

            try:
                since = time.time() - parse_duration(since_text)
            except ValueError as exc:
                error = f"since: {exc}"
        records = (
            await self._read(
                lambda s: s.runs(runner=runner, outcome=outcome, since=since, limit=100)
            )
        ) or []
        return self._page(
            request,
            "runs.html",
            runs=records,
            runner=runner or "",
            status_filter=status or "",
            since=since_text,
            error=error,
            runner_ids=sorted(self.control.runner_ids),
            statuses=[o.value for o in RunOutcome],
        )

    async def run_page(self, request: Request) -> Response:
        if (refused := self._login_first(request)) is not None:
            return refused
        run_id = request.path_params["run_id"]
        record = await self._read(lambda s: s.run(run_id))
        if record is None:
            text = f"No run {run_id} in the ledger."
            return self._page(request, "message.html", 404, title="Not found", text=text)
        return self._page(request, "run.html", run=record)

    async def tickets_page(self, request: Request) -> Response:
        if (refused := self._login_first(request)) is not None:
            return refused
        entries, done = (await self._read(_decisions_and_actions)) or ([], {})
        links: dict[str, str] = {}
        for entry in entries:
            ticket = entry.decision.ticket_id
            if ticket is None or ticket in links:
                continue
            for action in done.get(entry.run_id, ()):
                if action.ticket_id == ticket and action.system:
                    url = self.control.ticket_url(action.system, ticket)
                    if url:
                        links[ticket] = url
                    break
        return self._page(request, "tickets.html", entries=entries, done=done, links=links)

    async def review_page(self, request: Request) -> Response:
        if (refused := self._login_first(request)) is not None:
            return refused
        entries = (await self._read(lambda s: s.decisions(below_threshold=True, limit=200))) or []
        waiting = [e for e in entries if not e.corrected]
        return self._page(
            request,
            "review.html",
            entries=waiting,
            message=request.query_params.get("done"),
        )

    # -- acting ---------------------------------------------------------------------------

    async def runner_action(self, request: Request) -> Response:
        checked = await self._admin_form(request)
        if isinstance(checked, Response):
            return checked
        user, _ = checked
        runner = request.path_params["runner"]
        act = request.path_params["act"]
        if runner not in self.control.runner_ids:
            text = f"No runner {runner!r}."
            return self._page(request, "message.html", 404, title="Not found", text=text)
        if act == "fire":
            self.control.fire_runner(runner)
        elif act == "pause":
            self.control.pause(runner, by=user)
        elif act == "resume":
            self.control.resume(runner, by=user)
        else:
            text = f"Unknown action {act!r}: use fire, pause or resume."
            return self._page(request, "message.html", 404, title="Not found", text=text)
        return RedirectResponse("/", status_code=303)

    async def correct(self, request: Request) -> Response:
        checked = await self._admin_form(request)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        label = str(form.get("label") or form.get("other") or "").strip()
        other = str(form.get("other") or "").strip()
        if other:
            label = other
        run_id = request.path_params["run_id"]
        position = request.path_params["position"]
        try:
            done = await self.control.correct_decision(run_id, position, label, user=user)
        except CorrectionError as exc:
            return self._page(request, "message.html", 409, title="Not corrected", text=str(exc))
        text = f"ticket {done.ticket_id}: {done.field} set to {label}"
        return RedirectResponse(f"/review?{urlencode({'done': text})}", status_code=303)

    # -- live -----------------------------------------------------------------------------

    def _hear(self, event: Event) -> None:
        # On the run's path: one append per open page, nothing more (the stream formats).
        for stream in self._streams:
            stream.events.append(event)
            stream.wake.set()

    async def events(self, request: Request) -> Response:
        if self._user(request) is None:
            return Response("log in first\n", status_code=401, media_type="text/plain")
        live = _Stream()
        self._streams.add(live)

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 3000\n\n"
                while not live.closed:
                    try:
                        await asyncio.wait_for(live.wake.wait(), KEEPALIVE)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    live.wake.clear()
                    batch = list(live.events)
                    live.events.clear()
                    yield "".join(
                        f"event: {event.name}\ndata: {json.dumps(_live(event))}\n\n"
                        for event in batch
                    )
                    # At most one batch per interval, however many runs end meanwhile.
                    await asyncio.sleep(LIVE_INTERVAL)
            finally:
                self._streams.discard(live)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )


class _Stream:
    """One open page's live stream: the newest events (at most :data:`LIVE_BACKLOG`; a page
    shows no more) and the flag that wakes its sender."""

    __slots__ = ("closed", "events", "wake")

    def __init__(self) -> None:
        self.events: deque[Event] = deque(maxlen=LIVE_BACKLOG)
        self.wake = asyncio.Event()
        self.closed = False


def _live(event: Event) -> dict[str, Any]:
    """What a page needs of an event to update itself."""
    if isinstance(event, RunEnded):
        return {
            "runner": event.runner,
            "run_id": event.run_id,
            "trigger": event.trigger,
            "outcome": event.outcome.value,
            "duration_ms": round(event.duration * 1000, 1),
            "started": event.started,
            "error": event.error,
            "summary": event.summary(),
        }
    return {"runner": getattr(event, "runner", None), "by": getattr(event, "by", "")}


def _decisions_and_actions(
    store: SqliteLedgerStore,
) -> tuple[list[DecisionEntry], dict[str, tuple[Action, ...]]]:
    """The newest decisions, and the actions of the runs that made them, by run id."""
    entries = store.decisions(limit=100)
    found: dict[str, tuple[Action, ...]] = {}
    for run_id in dict.fromkeys(entry.run_id for entry in entries):
        record = store.run(run_id)
        if record is not None:
            found[run_id] = record.actions
    return entries, found


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _sparkline(values: list[float], width: int = 120, height: int = 24) -> str:
    """An SVG polyline of ``values`` (durations), or '' when there are fewer than two."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="durations of the last {len(values)} runs, longest '
        f'{top * 1000:.0f} ms"><polyline fill="none" stroke="currentColor" '
        f'stroke-width="1.5" points="{points}"/></svg>'
    )
