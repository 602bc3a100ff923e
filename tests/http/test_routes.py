"""Every route of the listener through Starlette's TestClient (the whole ASGI stack, without
a socket): status codes, JSON errors, the token, and the console's login, roles and CSRF.
The orchestrator is built but not running, so fires are refused as "stopping" and /readyz
says "starting"."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from open_ticket_ai import build, parse_config
from open_ticket_ai.http.console.auth import hash_password
from open_ticket_ai.http.listener import Listener
from open_ticket_ai.runtime.orchestrator import Orchestrator

TOKEN = "route-token"
PASSWORDS = {"admin": "admin-password-2", "viewer": "viewer-password-2"}


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


@pytest.fixture
def app(tmp_path: Path, hashes: dict[str, str]) -> Iterator[tuple[TestClient, Orchestrator]]:
    text = textwrap.dedent(
        f"""
        orchestrator:
          ledger: {{path: "{tmp_path / "ledger.sqlite"}"}}
          http:
            port: 0
            token: {TOKEN}
            metrics: true
            console: true
            console_users:
              admin: {{password_hash: '{hashes["admin"]}', role: admin}}
              viewer: {{password_hash: '{hashes["viewer"]}', role: viewer}}
          runners:
            - id: quick
              on: [{{id: hook, use: WebhookTrigger, params: {{secret: s}}}}]
              run: {{id: x, use: ExpressionPipe, params: {{expression: "1"}}}}
        """
    )
    orchestrator = Orchestrator(build(parse_config(text, str(tmp_path / "config.yml"))))
    settings = orchestrator.compiled.loaded.config.orchestrator.http
    assert settings is not None
    listener = Listener(settings, orchestrator)
    with TestClient(listener._strict, base_url="http://127.0.0.1") as client:
        yield client, orchestrator
    listener.console.close() if listener.console is not None else None
    orchestrator.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def login(client: TestClient, user: str) -> None:
    answer = client.post(
        "/login",
        data={"user": user, "password": PASSWORDS[user], "csrf": csrf(client)},
        follow_redirects=False,
    )
    assert answer.status_code == 303


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/livez", 200),
        ("POST", "/livez", 405),
        ("GET", "/readyz", 503),
        ("GET", "/health", 200),
        ("POST", "/health", 405),
        ("GET", "/status", 200),
        ("GET", "/metrics", 401),
        ("POST", "/hooks/nope", 404),
        ("GET", "/hooks/hook", 405),
        ("POST", "/hooks/hook", 401),
        ("POST", "/runners/quick/fire", 401),
        ("GET", "/nowhere", 404),
    ],
)
def test_the_api_answers_with_its_status_and_json_errors(
    app: tuple[TestClient, Orchestrator], method: str, path: str, status: int
) -> None:
    client, _ = app
    answer = client.request(method, path)
    assert answer.status_code == status
    if status >= 400 and path != "/readyz":  # /readyz says why in "reason"
        assert set(answer.json()) >= {"error"}


def test_readyz_says_why_and_metrics_need_the_token(app: tuple[TestClient, Orchestrator]) -> None:
    client, _ = app
    assert client.get("/readyz").json() == {"status": "not ready", "reason": "starting"}
    assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
    metrics = client.get("/metrics", headers=bearer())
    assert metrics.status_code == 200
    assert "otai_build_info" in metrics.text
    assert 'otai_runner_running{runner="quick"} 0.0' in metrics.text


def test_a_fire_while_not_running_is_refused_as_stopping(
    app: tuple[TestClient, Orchestrator],
) -> None:
    client, _ = app
    answer = client.post("/runners/quick/fire", headers=bearer())
    assert answer.status_code == 409
    assert answer.json()["refused"][0]["reason"] == "the orchestrator is stopping"
    assert client.post("/runners/ghost/fire", headers=bearer()).status_code == 404


@pytest.mark.parametrize("path", ["/", "/runs", "/runs/quick-1", "/tickets", "/review"])
def test_every_console_page_needs_a_login(app: tuple[TestClient, Orchestrator], path: str) -> None:
    client, _ = app
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={path}"


def test_the_console_pages_after_a_login(app: tuple[TestClient, Orchestrator]) -> None:
    client, _ = app
    login(client, "viewer")
    for path in ("/", "/runs", "/tickets", "/review", "/runs?status=failed&since=1h"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "viewer" in page.text
    assert client.get("/runs/quick-1").status_code == 404
    assert "unknown status" in client.get("/runs?status=nope").text
    assert "since:" in client.get("/runs?since=soon").text
    assert client.get("/console/static/console.js").status_code == 200


def test_logins_that_fail(app: tuple[TestClient, Orchestrator]) -> None:
    client, _ = app
    no_token = client.post("/login", data={"user": "admin", "password": PASSWORDS["admin"]})
    assert no_token.status_code == 400
    wrong = client.post(
        "/login", data={"user": "admin", "password": "nope-nope", "csrf": csrf(client)}
    )
    assert wrong.status_code == 401
    nobody = client.post(
        "/login", data={"user": "mallory", "password": "nope-nope", "csrf": csrf(client)}
    )
    assert nobody.status_code == 401
    assert client.get("/console/events").status_code == 401
    outside = client.get("/login?next=//evil.example/")
    assert 'action="/login?next=/"' in outside.text  # never back to another site


def test_acting_needs_an_admin_and_the_forms_token(app: tuple[TestClient, Orchestrator]) -> None:
    client, orchestrator = app
    login(client, "viewer")
    token = csrf(client, "/")
    viewer = client.post("/console/runners/quick/pause", data={"csrf": token})
    assert viewer.status_code == 403
    assert not orchestrator.runners["quick"].paused
    client.post("/logout", data={"csrf": token})
    assert client.get("/", follow_redirects=False).status_code == 303
    login(client, "admin")
    token = csrf(client, "/")
    assert client.post("/console/runners/quick/pause", data={"csrf": "x"}).status_code == 400
    paused = client.post(
        "/console/runners/quick/pause", data={"csrf": token}, follow_redirects=False
    )
    assert paused.status_code == 303
    assert orchestrator.runners["quick"].paused
    client.post("/console/runners/quick/resume", data={"csrf": token})
    assert not orchestrator.runners["quick"].paused
    assert client.post("/console/runners/quick/jump", data={"csrf": token}).status_code == 404
    assert client.post("/console/runners/ghost/pause", data={"csrf": token}).status_code == 404
    missing = client.post("/console/review/quick-9/0", data={"csrf": token, "label": "x"})
    assert missing.status_code == 409
    assert "no run &#39;quick-9&#39; in the ledger" in missing.text
    unauthenticated = TestClient(client.app, base_url="http://127.0.0.1")
    assert unauthenticated.post("/console/runners/quick/fire").status_code == 401


def test_webhooks_skip_starlettes_stack_and_keep_their_answers(
    app: tuple[TestClient, Orchestrator],
) -> None:
    client, _ = app
    listener = client.app.__self__  # type: ignore[attr-defined]
    assert isinstance(listener, Listener)
    reached: list[str] = []
    starlette = listener.app

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await starlette(scope, receive, send)

    listener.app = counting  # type: ignore[assignment]
    login(client, "viewer")  # a session cookie goes with every request from now on
    hook = client.post("/hooks/hook", headers=bearer("s"), json={"ticket": 1})
    assert hook.status_code == 409  # not running: refused as stopping, in the JSON form
    assert hook.json()["refused"][0]["reason"] == "the orchestrator is stopping"
    for method, path, status in (
        ("POST", "/hooks/hook", 401),
        ("GET", "/hooks/hook", 405),
        ("POST", "/hooks/nope", 404),
        ("POST", "/hooks/", 404),
    ):
        answer = client.request(method, path)
        assert answer.status_code == status, path
        assert set(answer.json()) == {"error"}
        assert "set-cookie" not in answer.headers
    assert client.get("/health").status_code == 200
    assert [path for path in reached if path.startswith("/hooks")] == []
    assert "/health" in reached
    assert "/login" in reached
