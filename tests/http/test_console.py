"""The operator's console through the real listener on 127.0.0.1: login and its limits,
roles, CSRF, every page, fire/pause/resume, the review queue writing a correction back to a
real SQLite helpdesk and into the ledger, and live updates over server-sent events."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from open_ticket_ai import build, parse_config
from open_ticket_ai.core.pipes.records import Action, Decision
from open_ticket_ai.core.triggers.base import FireStatus
from open_ticket_ai.http.console.auth import hash_password
from open_ticket_ai.http.listener import start_listener
from open_ticket_ai.runtime.events import DecisionCorrected, RunOutcome
from open_ticket_ai.runtime.ledger import RunRecord, SqliteLedgerStore
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket

ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"
HASHES = {"admin": hash_password(ADMIN_PASSWORD), "viewer": hash_password(VIEWER_PASSWORD)}


@dataclass
class Console:
    orchestrator: Orchestrator
    url: str
    ticket_id: str
    desk: Path
    ledger: Path
    state: Path


def config_text(tmp_path: Path) -> str:
    return textwrap.dedent(
        f"""
        services:
          - id: desk
            use: SqliteTicketSystem
            params: {{path: "{tmp_path / "desk.sqlite"}"}}
        orchestrator:
          state_path: "{tmp_path / "state.sqlite"}"
          ledger: {{path: "{tmp_path / "ledger.sqlite"}"}}
          http:
            port: 0
            console: true
            console_users:
              admin: {{password_hash: '{HASHES["admin"]}', role: admin}}
              viewer: {{password_hash: '{HASHES["viewer"]}', role: viewer}}
          runners:
            - id: quick
              on: [{{id: hourly, params: {{hours: 1}}}}]
              run: {{id: x, use: ExpressionPipe, params: {{expression: "done"}}}}
        """
    )


async def _routed_ticket(tmp_path: Path) -> str:
    """A ticket the model sent to Review, and the ledger's record of that run."""
    desk = SqliteTicketSystem(SqliteParams(path=str(tmp_path / "desk.sqlite")), id="desk")
    await desk.open()
    try:
        ticket = await desk.create(NewTicket(subject="Invoice wrong", queue="Review"))
    finally:
        await desk.close()
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite")
    now = time.time()
    store.append(
        [
            RunRecord(
                run_id="route-1",
                runner="route",
                trigger="every_5s",
                payload_size=None,
                scheduled=None,
                started=now - 5,
                ended=now - 4,
                outcome=RunOutcome.SUCCEEDED,
                error=None,
                dry_run=False,
                steps=(),
                actions=(
                    Action.ticket_updated(ticket.id, "desk", {"queue": ("Incoming", "Review")}),
                ),
                decisions=(
                    Decision(
                        model="queue_model",
                        label="Billing",
                        confidence=0.31,
                        top=(("Billing", 0.31), ("IT Support", 0.29)),
                        ticket_id=ticket.id,
                        below_threshold=True,
                        used="Review",
                    ),
                ),
            )
        ]
    )
    store.close()
    return ticket.id


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    ticket_id = await _routed_ticket(tmp_path)
    orchestrator = Orchestrator(
        build(parse_config(config_text(tmp_path), str(tmp_path / "config.yml"))),
        shutdown_timeout=0.1,
        listener=start_listener,
    )
    main = asyncio.create_task(orchestrator.run())
    for _ in range(300):
        if orchestrator._listener is not None:
            break
        await asyncio.sleep(0.01)
    assert orchestrator._listener is not None, "the listener did not start"
    try:
        yield Console(
            orchestrator,
            f"http://127.0.0.1:{orchestrator._listener.port}",
            ticket_id,
            tmp_path / "desk.sqlite",
            tmp_path / "ledger.sqlite",
            tmp_path / "state.sqlite",
        )
    finally:
        orchestrator.request_stop()
        assert await asyncio.wait_for(main, 10) == 0


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def login(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login", data={"user": user, "password": password, "csrf": csrf_of(page.text)}
    )


async def test_pages_need_a_login_and_every_page_renders(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.url) as client:
        first = await client.get("/runs")
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=/runs"
        assert (await client.get("/console/events")).status_code == 401
        answer = await login(client, "viewer", VIEWER_PASSWORD)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        for path, expected in (
            ("/", "quick"),
            ("/runs", "route-1"),
            ("/runs/route-1", "queue_model"),
            ("/tickets", "Billing"),
            ("/review", console.ticket_id),
        ):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert expected in page.text, path
            assert "<html" in page.text
        assert (await client.get("/runs/nope-9")).status_code == 404
        filtered = await client.get("/runs", params={"status": "failed"})
        assert "route-1" not in filtered.text
        assert "unknown status" in (await client.get("/runs?status=weird")).text


async def test_a_wrong_password_is_refused_and_repeated_failures_are_limited(
    console: Console,
) -> None:
    async with httpx.AsyncClient(base_url=console.url) as client:
        for _ in range(5):
            refused = await login(client, "admin", "not-the-password")
            assert refused.status_code == 401
            assert "Wrong user name or password" in refused.text
            assert "not-the-password" not in refused.text
        limited = await login(client, "admin", ADMIN_PASSWORD)
        assert limited.status_code == 429
        unknown = await login(client, "nobody", "whatever-1")
        assert unknown.status_code == 429  # the same client address is limited too


async def test_a_login_form_without_its_csrf_token_is_refused(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.url) as client:
        await client.get("/login")
        answer = await client.post("/login", data={"user": "admin", "password": ADMIN_PASSWORD})
        assert answer.status_code == 400


async def test_viewers_read_but_cannot_act_and_forms_need_the_token(console: Console) -> None:
    runner = console.orchestrator.runners["quick"]
    async with httpx.AsyncClient(base_url=console.url) as client:
        await login(client, "viewer", VIEWER_PASSWORD)
        page = await client.get("/")
        assert "Fire now" not in page.text
        token = csrf_of(page.text)
        refused = await client.post("/console/runners/quick/fire", data={"csrf": token})
        assert refused.status_code == 403
    async with httpx.AsyncClient(base_url=console.url) as client:
        await login(client, "admin", ADMIN_PASSWORD)
        forged = await client.post("/console/runners/quick/fire", data={"csrf": "forged"})
        assert forged.status_code == 400
    assert runner.stats.runs == 0


async def test_an_admin_fires_pauses_and_resumes_and_the_pause_is_kept(console: Console) -> None:
    runner = console.orchestrator.runners["quick"]
    async with httpx.AsyncClient(base_url=console.url) as client:
        await login(client, "admin", ADMIN_PASSWORD)
        token = csrf_of((await client.get("/")).text)
        fired = await client.post("/console/runners/quick/fire", data={"csrf": token})
        assert fired.status_code == 303
        for _ in range(200):
            if runner.stats.runs:
                break
            await asyncio.sleep(0.01)
        assert runner.stats.runs == 1
        paused = await client.post("/console/runners/quick/pause", data={"csrf": token})
        assert paused.status_code == 303
        assert runner.paused
        assert 'class="badge paused"' in (await client.get("/")).text
        refused = console.orchestrator.fire_runner("quick")
        assert refused.status is FireStatus.PAUSED
        assert refused.refused
        assert runner.stats.runs == 1
        assert console.orchestrator.state is not None
        assert console.orchestrator.state.paused() == {"quick"}
        await client.post("/console/runners/quick/resume", data={"csrf": token})
        assert not runner.paused
        assert console.orchestrator.state.paused() == set()
        missing = await client.post("/console/runners/ghost/fire", data={"csrf": token})
        assert missing.status_code == 404


async def test_a_paused_runner_skips_its_fires(console: Console) -> None:
    runner = console.orchestrator.runners["quick"]
    assert console.orchestrator.pause("quick", by="test")
    assert runner.fire(None) is None
    assert runner.stats.skips == 1
    assert runner.stats.runs == 0


async def test_a_correction_changes_the_ticket_and_is_recorded(console: Console) -> None:
    corrected: list[DecisionCorrected] = []
    console.orchestrator.bus.subscribe(corrected.append, DecisionCorrected)
    async with httpx.AsyncClient(base_url=console.url) as client:
        await login(client, "admin", ADMIN_PASSWORD)
        review = await client.get("/review")
        assert "Billing (0.31)" in review.text
        answer = await client.post(
            "/console/review/route-1/0",
            data={"csrf": csrf_of(review.text), "label": "Billing", "other": ""},
        )
        assert answer.status_code == 303, answer.text
        desk = SqliteTicketSystem(SqliteParams(path=str(console.desk)), id="desk")
        await desk.open()
        try:
            ticket = await desk.get(console.ticket_id)
        finally:
            await desk.close()
        assert ticket.queue == "Billing"
        assert console.orchestrator.ledger is not None
        assert console.orchestrator.ledger.flush()
        store = SqliteLedgerStore(console.ledger, readonly=True)
        try:
            record = store.run("console-1")
            entries = store.ticket(console.ticket_id)
        finally:
            store.close()
        assert record is not None
        assert record.actions[0].changes == {"queue": ("Review", "Billing")}
        assert record.actions[0].step == "console.review:admin"
        assert record.decisions[0].label == "Billing"
        assert record.decisions[0].confidence == 1.0
        assert entries[0].run_id == "console-1"
        assert [e.label for e in corrected] == ["Billing"]
        again = await client.get("/review")
        assert "Nothing waits for review" in again.text
        bad = await client.post(
            "/console/review/route-1/7", data={"csrf": csrf_of(again.text), "label": "IT"}
        )
        assert bad.status_code == 409
        assert "has no decision 7" in bad.text


async def test_runs_arrive_live_over_server_sent_events(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.url, timeout=10) as client:
        await login(client, "viewer", VIEWER_PASSWORD)
        async with client.stream("GET", "/console/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await anext(lines) == "retry: 3000"
            console.orchestrator.fire_runner("quick")
            seen: list[str] = []
            async with asyncio.timeout(5):
                async for line in lines:
                    seen.append(line)
                    if line.startswith("data:"):
                        break
        assert "event: run.finished" in seen
        data = json.loads(seen[-1].removeprefix("data: "))
        assert data["runner"] == "quick"
        assert data["outcome"] == "succeeded"
