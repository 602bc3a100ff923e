"""WebhookTrigger end to end: ``otai run`` as a subprocess with the listener on a free port
(read from the ``orchestrator.listening`` line), webhooks sent with httpx, and the runs'
HTTP requests recorded by a local server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.support.http_server import HttpServer, Reply
from tests.support.otai_process import OtaiProcess

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.base.triggers.webhook_trigger import (
    MAX_SEEN_SIGNATURES,
    Seen,
    SeenSignatures,
    WebhookParams,
    WebhookTrigger,
)
from open_ticket_ai.http.listener import Listener, start_listener
from open_ticket_ai.runtime.events import WebhookReplayed, WebhookUnauthorized
from open_ticket_ai.runtime.orchestrator import Orchestrator

SECRET = "s3cr3t-for-tests"
SECRET_TEMPLATE = "{{ env.OTAI_HOOK_SECRET }}"


def hook(trigger_id: str, **params: Any) -> dict[str, Any]:
    return {
        "id": trigger_id,
        "use": "WebhookTrigger",
        "params": {"secret": SECRET_TEMPLATE, **params},
    }


def post(server: HttpServer, path: str, **params: Any) -> dict[str, Any]:
    body = params or {"json": "{{ trigger.payload }}"}
    return {
        "id": "post",
        "use": "HttpRequestPipe",
        "params": {"method": "POST", "url": f"{server.url}{path}", **body},
    }


def runners(server: HttpServer) -> list[dict[str, Any]]:
    return [
        {"id": "bearer", "on": [hook("bearer_hook")], "run": post(server, "/bearer")},
        {"id": "hmac", "on": [hook("hmac_hook", auth="hmac-sha256")], "run": post(server, "/hmac")},
        {
            "id": "small",
            "on": [hook("small_hook", max_body_bytes=100)],
            "run": post(server, "/small"),
        },
        {
            "id": "text",
            "on": [hook("text_hook", json=False)],
            "run": post(server, "/text", body="got {{ trigger.payload }}"),
        },
        {"id": "slow", "on": [hook("slow_hook"), hook("fan_hook")], "run": post(server, "/slow")},
        {"id": "fast", "on": ["fan_hook"], "run": post(server, "/fast")},
    ]


class Instance:
    """A running ``otai run`` and a client for its listener."""

    def __init__(self, otai: OtaiProcess, server: HttpServer) -> None:
        self.otai = otai
        self.server = server
        listening = otai.wait_for_event("orchestrator.listening", timeout=15)
        assert listening["host"] == "127.0.0.1"
        otai.wait_for_event("orchestrator.ready")
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{listening['port']}", timeout=10)

    def send(
        self, trigger: str, body: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.post(f"/hooks/{trigger}", content=body, headers=headers or {})

    def runs(self, runner: str) -> int:
        return len(self.otai.find("run.started", runner=runner))


@pytest.fixture
def otai(tmp_path: Path) -> Iterator[Instance]:
    with HttpServer() as server:
        for path in ("/bearer", "/hmac", "/small", "/text", "/fast"):
            server.respond(path, Reply(200, text="ok"))
        server.respond("/slow", Reply(200, text="ok", delay=1.5))
        config = tmp_path / "config.yml"
        document = {
            "orchestrator": {
                "http": {"port": 0, "max_body_bytes": 4096},
                "runners": runners(server),
            }
        }
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        env = {"OTAI_HOOK_SECRET": SECRET}
        with OtaiProcess("run", str(config), "--log-format", "json", env=env) as process:
            instance = Instance(process, server)
            try:
                yield instance
            finally:
                instance.client.close()


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={digest}"}


# -- bearer -------------------------------------------------------------------------------


def test_bearer_webhook_starts_a_run_with_the_payload(otai: Instance) -> None:
    payload = {"ticket": {"id": 42, "subject": "Drucker kaputt"}, "tags": ["a", "b"]}
    response = otai.send("bearer_hook", json.dumps(payload).encode(), bearer())
    assert response.status_code == 202
    assert response.json() == {"runs": [{"runner": "bearer", "run_id": "bearer-1"}], "refused": []}
    (hit,) = otai.server.wait_for_hits(1, "/bearer")
    assert hit.json() == payload
    finished = otai.otai.wait_for_event("run.finished", runner="bearer")
    assert finished["trigger"] == "bearer_hook"


@pytest.mark.parametrize(
    "headers", [{}, bearer("wrong"), {"Authorization": SECRET}, {"Authorization": "Basic x"}]
)
def test_bearer_webhook_without_the_secret_gets_401_and_no_run(
    otai: Instance, headers: dict[str, str]
) -> None:
    refused = otai.send("bearer_hook", b'{"evil": true}', headers)
    assert refused.status_code == 401
    assert "error" in refused.json()
    # A good request afterwards is the first and only run: the refused one started nothing.
    assert otai.send("bearer_hook", b'{"good": true}', bearer()).status_code == 202
    otai.otai.wait_for_event("run.finished", runner="bearer")
    assert otai.runs("bearer") == 1
    assert [h.json() for h in otai.server.hits("/bearer")] == [{"good": True}]
    assert otai.otai.find("webhook.unauthorized", trigger="bearer_hook")


# -- hmac ---------------------------------------------------------------------------------


def test_hmac_webhook_with_a_good_signature_starts_a_run(otai: Instance) -> None:
    body = b'{"action": "opened", "n": 1}'
    response = otai.send("hmac_hook", body, signed(body))
    assert response.status_code == 202
    assert response.json()["runs"] == [{"runner": "hmac", "run_id": "hmac-1"}]
    assert otai.server.wait_for_hits(1, "/hmac")[0].json() == {"action": "opened", "n": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        signed(b'{"other": "body"}'),
        signed(b'{"n": 1}', secret="wrong"),
        {"X-Signature-256": "sha256=zz"},
        {"X-Signature-256": hmac.new(SECRET.encode(), b'{"n": 1}', hashlib.sha256).hexdigest()},
        bearer(),
    ],
    ids=["missing", "other-body", "other-secret", "garbage", "no-prefix", "bearer"],
)
def test_hmac_webhook_with_a_bad_signature_gets_401_and_no_run(
    otai: Instance, headers: dict[str, str]
) -> None:
    assert otai.send("hmac_hook", b'{"n": 1}', headers).status_code == 401
    good = b'{"n": 2}'
    assert otai.send("hmac_hook", good, signed(good)).status_code == 202
    otai.otai.wait_for_event("run.finished", runner="hmac")
    assert otai.runs("hmac") == 1
    assert [h.json() for h in otai.server.hits("/hmac")] == [{"n": 2}]


# -- bodies -------------------------------------------------------------------------------


def test_a_body_over_the_listener_limit_gets_413(otai: Instance) -> None:
    body = json.dumps({"blob": "x" * 5000}).encode()
    response = otai.send("bearer_hook", body, bearer())
    assert response.status_code == 413
    assert "4096" in response.json()["error"]
    assert otai.runs("bearer") == 0


def test_a_body_over_the_trigger_limit_gets_413(otai: Instance) -> None:
    assert (
        otai.send("small_hook", json.dumps({"x": "y" * 200}).encode(), bearer()).status_code == 413
    )
    assert otai.send("small_hook", b'{"x": "short"}', bearer()).status_code == 202
    otai.otai.wait_for_event("run.finished", runner="small")
    assert otai.runs("small") == 1


@pytest.mark.parametrize("body", [b"not json", b"", b"{'single': 'quotes'}", b"\xff\xfe"])
def test_a_body_that_is_not_json_gets_400(otai: Instance, body: bytes) -> None:
    response = otai.send("bearer_hook", body, bearer())
    assert response.status_code == 400
    assert response.json()["error"].startswith("the body is not JSON")
    assert otai.runs("bearer") == 0


def test_with_json_false_the_payload_is_the_body_text(otai: Instance) -> None:
    assert otai.send("text_hook", b"plain words", bearer()).status_code == 202
    assert otai.server.wait_for_hits(1, "/text")[0].text == "got plain words"


# -- busy ---------------------------------------------------------------------------------


def test_a_busy_runner_is_refused_with_409(otai: Instance) -> None:
    first = otai.send("slow_hook", b"{}", bearer())
    second = otai.send("slow_hook", b"{}", bearer())
    assert first.status_code == 202
    assert first.json()["runs"] == [{"runner": "slow", "run_id": "slow-1"}]
    assert second.status_code == 409
    body = second.json()
    assert body["runs"] == []
    assert "busy" in body["error"]
    assert "slow-1" in body["error"]
    assert body["refused"] == [{"runner": "slow", "reason": body["error"]}]
    assert otai.otai.wait_for_event("trigger.refused", runner="slow")["trigger"] == "slow_hook"


def test_one_busy_runner_of_several_is_listed_as_refused(otai: Instance) -> None:
    both = otai.send("fan_hook", b"{}", bearer())
    assert both.status_code == 202
    assert sorted(r["runner"] for r in both.json()["runs"]) == ["fast", "slow"]
    otai.otai.wait_for_event("run.finished", runner="fast")
    again = otai.send("fan_hook", b"{}", bearer())
    assert again.status_code == 202
    assert again.json()["runs"] == [{"runner": "fast", "run_id": "fast-2"}]
    (refused,) = again.json()["refused"]
    assert refused["runner"] == "slow"
    assert "busy" in refused["reason"]


# -- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({}, "secret"),
        ({"secret": ""}, "secret"),
        ({"secret": "x", "auth": "basic"}, "auth"),
        ({"secret": "x", "max_body_bytes": 0}, "max_body_bytes"),
        ({"secret": "{{ env.OTAI_NOT_SET_ANYWHERE }}"}, "OTAI_NOT_SET_ANYWHERE"),
    ],
)
def test_bad_params_are_config_errors(params: dict[str, Any], wanted: str) -> None:
    text = yaml.safe_dump(
        {
            "runners": [
                {
                    "id": "r",
                    "on": [{"id": "h", "use": "WebhookTrigger", "params": params}],
                    "run": {"id": "x", "use": "ExpressionPipe", "params": {"expression": "1"}},
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match=wanted):
        build(parse_config(text, "hooks.yml"))


def test_sigterm_stops_promptly_with_a_client_connection_open(otai: Instance) -> None:
    assert otai.client.get("/health").status_code == 200  # a kept-alive connection stays open
    otai.otai.send_signal(signal.SIGTERM)
    assert otai.otai.wait(10) == 0
    otai.otai.wait_for_event("orchestrator.stopped")


# -- timestamped signatures: replay protection --------------------------------------------
#
# In-process: a real Orchestrator with its listener on 127.0.0.1, the triggers' clocks
# replaced by a FakeClock (no sleeping), and the bus's events collected.

NOW = 1_700_000_000


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stamped(body: bytes, ts: int | str, secret: str = SECRET) -> dict[str, str]:
    """The separate form: ``X-Timestamp`` and ``sha256=`` of ``"<ts>.<body>"``."""
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Timestamp": str(ts), "X-Signature-256": f"sha256={digest}"}


def combined(body: bytes, ts: int | str, secret: str = SECRET) -> dict[str, str]:
    """The combined form: ``X-Signature-256: t=<ts>,v1=<hex>``."""
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"t={ts},v1={digest}"}


FORMS = {"stamped_hook": stamped, "combined_hook": combined}
RUNNER = {"stamped_hook": "stamped", "combined_hook": "combined"}


def echo(trigger: dict[str, Any], runner: str) -> dict[str, Any]:
    return {
        "id": runner,
        "on": [trigger],
        "run": {"id": "x", "use": "ExpressionPipe", "params": {"expression": "{{ 1 }}"}},
    }


def stamped_config() -> str:
    secret = {"secret": SECRET, "auth": "hmac-sha256"}
    hooks = [
        {"id": "stamped_hook", "params": {**secret, "timestamp_header": "X-Timestamp"}},
        {"id": "combined_hook", "params": {**secret, "timestamp_header": "signature"}},
        {"id": "short_hook", "params": {**secret, "timestamp_header": "t", "tolerance": "30s"}},
        {"id": "plain_hook", "params": secret},
    ]
    runners = [echo({"use": "WebhookTrigger", **h}, h["id"].removesuffix("_hook")) for h in hooks]
    return yaml.safe_dump({"orchestrator": {"http": {"port": 0}, "runners": runners}})


class Local:
    """An in-process orchestrator and listener, a fake clock and the events published."""

    def __init__(self, orchestrator: Orchestrator, listener: Listener) -> None:
        self.orchestrator = orchestrator
        self.clock = FakeClock()
        self.triggers: dict[str, WebhookTrigger] = {}
        for id, trigger in orchestrator.compiled.triggers.items():
            assert isinstance(trigger, WebhookTrigger)
            trigger.clock = self.clock
            self.triggers[id] = trigger
        self.events: list[Any] = []
        orchestrator.bus.subscribe(self.events.append, WebhookReplayed, WebhookUnauthorized)
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}", timeout=10)

    async def send(self, trigger: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        response = await self.client.post(f"/hooks/{trigger}", content=body, headers=headers)
        if response.status_code == 202:
            await self.settle()
        return response

    async def settle(self) -> None:
        """Wait for the runs to end, so that the next fire does not find a runner busy."""
        for _ in range(500):
            if not any(h.running for h in self.orchestrator.health().values()):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("a run did not end")

    def runs(self, runner: str) -> int:
        return self.orchestrator.health()[runner].runs

    def published(self, kind: type[Any], trigger: str) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.trigger == trigger]


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    orchestrator = Orchestrator(
        build(parse_config(stamped_config(), "stamped.yml")),
        shutdown_timeout=0.1,
        listener=start_listener,
    )
    main = asyncio.create_task(orchestrator.run())
    for _ in range(500):
        if orchestrator._listener is not None:
            break
        await asyncio.sleep(0.01)
    assert orchestrator._listener is not None, "the listener did not start"
    instance = Local(orchestrator, orchestrator._listener)
    try:
        yield instance
    finally:
        await instance.client.aclose()
        orchestrator.request_stop()
        assert await asyncio.wait_for(main, 10) == 0


@pytest.mark.parametrize("trigger", FORMS)
async def test_a_fresh_timestamped_signature_starts_a_run(local: Local, trigger: str) -> None:
    body = b'{"ticket": 7}'
    response = await local.send(trigger, body, FORMS[trigger](body, NOW))
    assert response.status_code == 202
    runner = RUNNER[trigger]
    assert response.json()["runs"] == [{"runner": runner, "run_id": f"{runner}-1"}]
    # Anywhere within the tolerance (5m by default), either way, is fresh.
    for ts in (NOW - 300, NOW + 300, NOW - 1):
        assert (await local.send(trigger, body, FORMS[trigger](body, ts))).status_code == 202
    assert local.runs(runner) == 4
    assert len(local.triggers[trigger].seen) == 4


@pytest.mark.parametrize("trigger", FORMS)
async def test_a_replay_gets_409_and_webhook_replayed(local: Local, trigger: str) -> None:
    body = b'{"ticket": 7}'
    headers = FORMS[trigger](body, NOW - 10)
    assert (await local.send(trigger, body, headers)).status_code == 202
    local.clock.now += 200  # still within the tolerance
    replay = await local.send(trigger, body, headers)
    assert replay.status_code == 409
    answer = replay.json()
    assert answer["replayed"] is True
    assert "replay" in answer["error"]
    assert "fresh" in answer["error"]
    assert local.runs(RUNNER[trigger]) == 1
    # Upper-case hex is the same signature, so the same replay.
    sig = headers["X-Signature-256"]
    upper = {**headers, "X-Signature-256": sig[: sig.rindex("=") + 1] + sig.split("=")[-1].upper()}
    assert (await local.send(trigger, body, upper)).status_code == 409
    # A fresh signature of the same body is a new request.
    assert (await local.send(trigger, body, FORMS[trigger](body, NOW + 200))).status_code == 202
    assert local.runs(RUNNER[trigger]) == 2


@pytest.mark.parametrize("trigger", FORMS)
async def test_a_replay_is_published_as_webhook_replayed(local: Local, trigger: str) -> None:
    body = b'{"ticket": 7}'
    headers = FORMS[trigger](body, NOW)
    assert (await local.send(trigger, body, headers)).status_code == 202
    assert (await local.send(trigger, body, headers)).status_code == 409
    (event,) = local.published(WebhookReplayed, trigger)
    assert event.name == "webhook.replayed"
    assert event.client.startswith("127.0.0.1")
    assert "replay" in event.reason
    assert not local.published(WebhookUnauthorized, trigger)


@pytest.mark.parametrize("trigger", FORMS)
@pytest.mark.parametrize(
    ("ts", "wanted"),
    [
        (NOW - 301, "5m1s old, more than the tolerance of 5m"),
        (NOW - 86400, "1d old"),
        (NOW + 301, "5m1s in the future, more than the tolerance of 5m"),
        (0, "old"),
        ("17e8", "is not unix seconds"),
        ("-5", "is not unix seconds"),
        ("1700000000.5", "is not unix seconds"),
    ],
)
async def test_an_old_future_or_bad_timestamp_gets_401(
    local: Local, trigger: str, ts: int | str, wanted: str
) -> None:
    body = b'{"ticket": 7}'
    # Correctly signed, but not fresh: refused all the same, and nothing remembered.
    refused = await local.send(trigger, body, FORMS[trigger](body, ts))
    assert refused.status_code == 401
    assert wanted in refused.json()["error"]
    assert local.runs(RUNNER[trigger]) == 0
    assert len(local.triggers[trigger].seen) == 0
    (event,) = local.published(WebhookUnauthorized, trigger)
    assert wanted in event.reason


@pytest.mark.parametrize(
    ("trigger", "headers", "wanted"),
    [
        ("stamped_hook", {}, "an 'X-Timestamp: <unix seconds>' is required"),
        ("stamped_hook", signed(b"{}"), "an 'X-Timestamp: <unix seconds>' is required"),
        ("stamped_hook", {"X-Timestamp": str(NOW)}, "'X-Signature-256: sha256=...' is required"),
        ("stamped_hook", {"X-Timestamp": "", **signed(b"{}")}, "X-Timestamp: <unix seconds>"),
        ("combined_hook", {}, "'X-Signature-256: t=<unix seconds>,v1=<hex>' is required"),
        ("combined_hook", signed(b"{}"), "t=<unix seconds>,v1=<hex>' is required"),
        ("combined_hook", {"X-Signature-256": f"t={NOW}"}, "v1=<hex>' is required"),
        ("combined_hook", {"X-Signature-256": "v1=abcd"}, "t=<unix seconds>,v1=<hex>"),
        (
            "combined_hook",
            {"X-Signature-256": f"t={NOW},t={NOW},v1=ab"},
            "more than one t=",
        ),
        ("combined_hook", stamped(b"{}", NOW), "t=<unix seconds>,v1=<hex>' is required"),
    ],
)
async def test_a_missing_timestamp_gets_401(
    local: Local, trigger: str, headers: dict[str, str], wanted: str
) -> None:
    refused = await local.send(trigger, b"{}", headers)
    assert refused.status_code == 401
    assert wanted in refused.json()["error"]
    assert local.published(WebhookUnauthorized, trigger)


@pytest.mark.parametrize("trigger", FORMS)
async def test_a_body_changed_under_the_same_timestamp_fails(local: Local, trigger: str) -> None:
    body = b'{"amount": 10}'
    headers = FORMS[trigger](body, NOW)
    for other in (b'{"amount": 1000}', body + b" ", b""):
        refused = await local.send(trigger, other, headers)
        assert refused.status_code == 401
        assert "does not match" in refused.json()["error"]
    # The same signature with another timestamp fails too: the timestamp is signed.
    moved = FORMS[trigger](body, NOW)
    if trigger == "stamped_hook":
        moved["X-Timestamp"] = str(NOW + 1)
    else:
        moved["X-Signature-256"] = moved["X-Signature-256"].replace(f"t={NOW}", f"t={NOW + 1}")
    assert (await local.send(trigger, body, moved)).status_code == 401
    # So does a signature of the body alone (GitHub's scheme) or with another secret.
    assert (await local.send(trigger, body, signed(body))).status_code == 401
    assert (await local.send(trigger, body, FORMS[trigger](body, NOW, "wrong"))).status_code == 401
    assert local.runs(RUNNER[trigger]) == 0
    assert len(local.triggers[trigger].seen) == 0
    # Refused attempts remembered nothing: the genuine request still passes, once.
    assert (await local.send(trigger, body, headers)).status_code == 202
    assert (await local.send(trigger, body, headers)).status_code == 409


@pytest.mark.parametrize("trigger", FORMS)
async def test_a_signature_is_forgotten_once_its_timestamp_is_stale(
    local: Local, trigger: str
) -> None:
    body = b'{"ticket": 7}'
    headers = FORMS[trigger](body, NOW)
    seen = local.triggers[trigger].seen
    assert (await local.send(trigger, body, headers)).status_code == 202
    local.clock.now = NOW + 300  # the last second of the tolerance: still remembered
    assert (await local.send(trigger, body, headers)).status_code == 409
    local.clock.now = NOW + 301
    # Forgotten now, but the same request is refused for its timestamp instead.
    stale = await local.send(trigger, body, headers)
    assert stale.status_code == 401
    assert "old" in stale.json()["error"]
    # Re-signed with a fresh timestamp, the same body passes again.
    fresh = FORMS[trigger](body, NOW + 301)
    assert (await local.send(trigger, body, fresh)).status_code == 202
    assert len(seen) == 1  # the expired signature was dropped
    assert local.runs(RUNNER[trigger]) == 2


async def test_a_future_timestamp_is_remembered_until_it_is_stale(local: Local) -> None:
    """A timestamp ahead of the clock stays fresh longer, and is remembered as long."""
    body = b"{}"
    headers = combined(body, NOW + 250)
    assert (await local.send("combined_hook", body, headers)).status_code == 202
    local.clock.now = NOW + 540  # 290s after the timestamp
    assert (await local.send("combined_hook", body, headers)).status_code == 409
    local.clock.now = NOW + 551
    assert (await local.send("combined_hook", body, headers)).status_code == 401


async def test_the_tolerance_is_a_duration(local: Local) -> None:
    trigger = local.triggers["short_hook"]
    assert trigger.params.tolerance == 30.0
    body = b"{}"
    ts = {"t": str(NOW - 31), **stamped(body, NOW - 31)}
    refused = await local.send("short_hook", body, ts)
    assert refused.status_code == 401
    assert "31s old, more than the tolerance of 30s" in refused.json()["error"]
    ok = {"t": str(NOW - 30), **stamped(body, NOW - 30)}
    assert (await local.send("short_hook", body, ok)).status_code == 202


async def test_several_v1_signatures_any_may_match(local: Local) -> None:
    """As while a secret is rotated: every ``v1`` is tried; other schemes are ignored."""
    body = b'{"n": 1}'
    good = combined(body, NOW)["X-Signature-256"].split("v1=")[1]
    old = combined(body, NOW, "old-secret")["X-Signature-256"].split("v1=")[1]
    header = {"X-Signature-256": f"t={NOW}, v0=zz, v1={old}, v1={good}"}
    assert (await local.send("combined_hook", body, header)).status_code == 202
    # Reordered or padded with other candidates it is still the same signature.
    again = {"X-Signature-256": f"v1={good},t={NOW},v1={'0' * 64}"}
    assert (await local.send("combined_hook", body, again)).status_code == 409


async def test_the_store_of_seen_signatures_is_capped(local: Local) -> None:
    trigger = local.triggers["stamped_hook"]
    trigger.seen.cap = 3
    body = b"{}"
    for i in range(3):
        assert (await local.send("stamped_hook", body, stamped(body, NOW + i))).status_code == 202
    full = await local.send("stamped_hook", body, stamped(body, NOW + 3))
    # Full: new signatures are refused (never a forgotten one let through) until one expires.
    assert full.status_code == 503
    assert "3 signatures were accepted within the tolerance of 5m" in full.json()["error"]
    assert full.headers["retry-after"] == "300"
    assert len(trigger.seen) == 3
    # The ones remembered are still refused as replays.
    assert (await local.send("stamped_hook", body, stamped(body, NOW))).status_code == 409
    local.clock.now = NOW + 301  # the first (NOW) expires
    assert (await local.send("stamped_hook", body, stamped(body, NOW + 3))).status_code == 202
    assert len(trigger.seen) == 3
    assert local.runs("stamped") == 4


def test_seen_signatures_forget_in_expiry_order_and_stay_bounded() -> None:
    assert SeenSignatures().cap == MAX_SEEN_SIGNATURES == 100_000
    seen = SeenSignatures(cap=1000)
    # Expiries out of insertion order, as timestamps within the tolerance come.
    for i in range(1000):
        assert seen.add(i.to_bytes(4, "big"), 1000 + (i * 7919) % 1000, now=0) is Seen.NEW
    assert seen.add(b"late", 5000, now=0) is Seen.FULL
    assert seen.add((5).to_bytes(4, "big"), 9999, now=0) is Seen.REPLAYED
    assert seen.next_expiry() == 1000
    seen.forget_expired(1499.5)
    assert len(seen) == 500
    assert seen.next_expiry() == 1500
    for i in range(200_000):  # a long steady stream stays within the cap
        seen.add(f"k{i}".encode(), 2000 + i / 100, now=1500 + i / 100 - 5)
        assert len(seen) <= 1000
    assert len(seen._heap) <= 1000


async def test_without_timestamp_header_nothing_changes(local: Local) -> None:
    """No timestamp: no replay check (a replay cannot be told from a retry); timestamp
    headers are ignored, and the signature is over the body alone."""
    body = b'{"n": 1}'
    for _ in range(3):
        assert (await local.send("plain_hook", body, signed(body))).status_code == 202
    local.clock.now = 0
    assert (await local.send("plain_hook", body, signed(body))).status_code == 202
    assert (await local.send("plain_hook", body, stamped(body, NOW))).status_code == 401
    mixed = {**signed(body), "X-Timestamp": "not a time"}
    assert (await local.send("plain_hook", body, mixed)).status_code == 202
    assert local.runs("plain") == 5
    assert len(local.triggers["plain_hook"].seen) == 0
    assert local.triggers["plain_hook"].params.timestamp_header is None


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({"timestamp_header": "X-Timestamp"}, "timestamp_header needs 'auth: hmac-sha256'"),
        ({"auth": "bearer", "timestamp_header": "signature"}, "timestamp_header needs"),
        ({"auth": "hmac-sha256", "tolerance": "10m"}, "tolerance needs timestamp_header"),
        ({"tolerance": "10m"}, "tolerance needs timestamp_header"),
        ({"auth": "hmac-sha256", "timestamp_header": "X Time"}, "timestamp_header 'X Time'"),
        ({"auth": "hmac-sha256", "timestamp_header": ""}, "is not a header name"),
        ({"auth": "hmac-sha256", "timestamp_header": 5}, "timestamp_header"),
        (
            {"auth": "hmac-sha256", "timestamp_header": "X-Timestamp", "tolerance": "soon"},
            "tolerance",
        ),
        ({"auth": "hmac-sha256", "timestamp_header": "X-Timestamp", "tolerance": 0}, "tolerance"),
    ],
)
def test_bad_timestamp_params_are_config_errors(params: dict[str, Any], wanted: str) -> None:
    text = yaml.safe_dump(
        {
            "runners": [
                {
                    "id": "r",
                    "on": [
                        {"id": "h", "use": "WebhookTrigger", "params": {"secret": "x", **params}}
                    ],
                    "run": {"id": "x", "use": "ExpressionPipe", "params": {"expression": "1"}},
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match=re.escape(wanted)):
        build(parse_config(text, "hooks.yml"))


@pytest.mark.parametrize(
    "spelling", ["signature", "Signature", "X-Signature-256", "x-signature-256"]
)
def test_the_combined_form_is_signature_or_the_signature_header(spelling: str) -> None:
    params = WebhookParams(secret="x", auth="hmac-sha256", timestamp_header=spelling)
    assert params.combined
    assert not WebhookParams(secret="x", auth="hmac-sha256", timestamp_header="X-Ts").combined
