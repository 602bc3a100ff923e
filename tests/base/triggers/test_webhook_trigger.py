"""WebhookTrigger end to end: ``otai run`` as a subprocess with the listener on a free port
(read from the ``orchestrator.listening`` line), webhooks sent with httpx, and the runs'
HTTP requests recorded by a local server."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.support.http_server import HttpServer, Reply
from tests.support.otai_process import OtaiProcess

from open_ticket_ai import ConfigError, build, parse_config

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
