"""HttpRequestPipe against a real HTTP server on 127.0.0.1, run the way a runner runs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from tests.support.http_server import HttpServer, Reply, closed_port_url

from open_ticket_ai import ConfigError, PipeResult, build, parse_config
from open_ticket_ai.core.pipes.run import PipeSpec, RunContext, execute_pipe


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx honours proxy variables; a proxy in the environment must not see 127.0.0.1 tests.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer() as running:
        yield running


def call(id: str = "call", **params: Any) -> dict[str, Any]:
    return {"id": id, "use": "HttpRequestPipe", "params": params}


def pipeline(run: dict[str, Any]) -> PipeSpec:
    text = yaml.safe_dump({"orchestrator": {"runners": [{"id": "r", "run": run}]}})
    return build(parse_config(text, "config.yml")).runners[0].pipeline


async def execute(run: dict[str, Any]) -> tuple[PipeResult, RunContext]:
    context = RunContext(runner="r")
    result = await execute_pipe(pipeline(run), context)
    return result, context


# -- what is sent ---------------------------------------------------------------------------


async def test_get_answers_status_headers_json_and_text(server: HttpServer) -> None:
    server.respond("/tickets", Reply(json={"tickets": [1, 2]}, headers={"X-Total": "2"}))

    result, _ = await execute(call(url=f"{server.url}/tickets"))

    assert result.succeeded, result.message
    assert result.data["status"] == 200
    assert result.data["headers"]["x-total"] == "2"
    assert result.data["headers"]["content-type"] == "application/json"
    assert result.data["json"] == {"tickets": [1, 2]}
    assert result.data["text"] == '{"tickets": [1, 2]}'
    [hit] = server.hits("/tickets")
    assert hit.method == "GET"


async def test_text_answer_has_no_json(server: HttpServer) -> None:
    server.respond("/plain", Reply(text='{"looks": "like json"}'))

    result, _ = await execute(call(url=f"{server.url}/plain"))

    assert result.succeeded, result.message
    assert result.data["text"] == '{"looks": "like json"}'
    assert "json" not in result.data


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/problem+json"],
)
async def test_any_json_content_type_is_parsed(server: HttpServer, content_type: str) -> None:
    server.respond("/j", Reply(json={"a": [1]}, content_type=content_type))

    result, _ = await execute(call(url=f"{server.url}/j"))

    assert result.succeeded, result.message
    assert result.data["json"] == {"a": [1]}


async def test_broken_json_keeps_the_text(server: HttpServer) -> None:
    server.respond("/j", Reply(text="{not json", content_type="application/json"))

    result, _ = await execute(call(url=f"{server.url}/j"))

    assert result.succeeded, result.message
    assert result.data["text"] == "{not json"
    assert "json" not in result.data


async def test_method_headers_query_and_json_are_sent(server: HttpServer) -> None:
    server.respond("/api", Reply(201, json={"id": 9}))

    result, _ = await execute(
        call(
            method="post",
            url=f"{server.url}/api",
            headers={"Authorization": "Token abc", "X-Count": 5, "X-Dry-Run": True},
            query={"queue": "Support", "tag": ["a", "b"], "page": 2, "skipped": None},
            json={"subject": "Printer", "priority": 3, "tags": ["x"]},
        )
    )

    assert result.succeeded, result.message
    assert result.data["json"] == {"id": 9}
    [hit] = server.hits("/api")
    assert hit.method == "POST"
    assert hit.query == {"queue": ["Support"], "tag": ["a", "b"], "page": ["2"]}
    assert hit.headers["authorization"] == "Token abc"
    assert hit.headers["x-count"] == "5"
    assert hit.headers["x-dry-run"] == "true"
    assert hit.headers["content-type"] == "application/json"
    assert hit.json() == {"subject": "Printer", "priority": 3, "tags": ["x"]}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_body_is_sent_as_is(server: HttpServer, method: str) -> None:
    server.respond("/raw", Reply(204))

    result, _ = await execute(
        call(
            method=method,
            url=f"{server.url}/raw",
            headers={"Content-Type": "text/plain"},
            body="line one\nline two",
        )
    )

    assert result.succeeded, result.message
    assert result.data["status"] == 204
    [hit] = server.hits("/raw")
    assert hit.method == method
    assert hit.text == "line one\nline two"
    assert hit.headers["content-type"] == "text/plain"


async def test_head_has_an_empty_text(server: HttpServer) -> None:
    server.respond("/h", Reply(json={"not": "sent"}))

    result, _ = await execute(call(method="HEAD", url=f"{server.url}/h"))

    assert result.succeeded, result.message
    assert result.data["text"] == ""
    assert server.hits("/h")[0].method == "HEAD"


# -- expected statuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expect", "succeeded"),
    [
        (200, None, True),
        (204, None, True),
        (299, None, True),
        (302, None, False),
        (404, None, False),
        (500, None, False),
        (404, 404, True),
        (200, 404, False),
        (409, [200, 409], True),
        (201, [200, 409], False),
    ],
)
async def test_expect_status(
    server: HttpServer, status: int, expect: int | list[int] | None, succeeded: bool
) -> None:
    server.respond("/s", Reply(status, text="answer"))
    params: dict[str, Any] = {"url": f"{server.url}/s"}
    if expect is not None:
        params["expect_status"] = expect

    result, _ = await execute(call(**params))

    assert result.succeeded is succeeded, result.message
    assert result.data["status"] == status


async def test_unexpected_status_fails_with_status_and_body_excerpt(server: HttpServer) -> None:
    body = "Internal   error:\n  database " + "x" * 5000
    server.respond("/boom", Reply(500, text=body))

    result, context = await execute(call(url=f"{server.url}/boom"))

    assert result.failed
    assert f"GET {server.url}/boom answered 500: Internal error: database xxx" in result.message
    assert len(result.message) < 400  # an excerpt, not the 5 kB body
    assert result.data["status"] == 500
    assert result.data["text"] == body
    assert context.results["call"] is result


# -- faults are results ---------------------------------------------------------------------


async def test_connection_refused_is_a_failed_result() -> None:
    url = closed_port_url()

    result, _ = await execute(call(url=f"{url}/x"))

    assert result.failed
    assert f"GET {url}/x: ConnectError" in result.message
    assert isinstance(result.error, httpx.ConnectError)


@pytest.mark.parametrize(("limit", "shown"), [(0.2, "200ms"), ("250ms", "250ms")])
async def test_slow_answer_times_out_as_a_failed_result(
    server: HttpServer, limit: float | str, shown: str
) -> None:
    server.respond("/slow", Reply(json={"late": True}, delay=10))

    result, _ = await execute(call(url=f"{server.url}/slow", timeout=limit))

    assert result.failed
    assert result.message == f"GET {server.url}/slow: timed out after {shown}"
    assert isinstance(result.error, httpx.TimeoutException)
    assert len(server.hits("/slow")) == 1


async def test_url_rendered_to_a_bad_scheme_fails_at_run_time() -> None:
    result, _ = await execute(
        {
            "id": "flow",
            "params": {"base": "ftp://files"},
            "steps": [call(url="{{ parent.base }}/x")],
        }
    )

    assert result.failed
    assert "orchestrator.runners[0].run.steps[0].params.url" in result.message
    assert "http:// or https://" in result.message


# -- templates ------------------------------------------------------------------------------


async def test_url_from_parent_params(server: HttpServer) -> None:
    server.respond("/api/x", Reply(json=1))

    result, context = await execute(
        {
            "id": "flow",
            "params": {"base": f"{server.url}/api"},
            "steps": [call(url="{{ parent.base }}/x", query={"q": "{{ parent.base }}"})],
        }
    )

    assert result.succeeded, result.message
    assert context.results["call"].data["json"] == 1
    [hit] = server.hits("/api/x")
    assert hit.query == {"q": [f"{server.url}/api"]}


async def test_json_and_headers_from_an_earlier_step_keep_their_type(server: HttpServer) -> None:
    server.respond("/n", Reply(json="ok"))

    result, _ = await execute(
        {
            "id": "flow",
            "steps": [
                {"id": "a", "use": "ExpressionPipe", "params": {"expression": "{{ 6 * 7 }}"}},
                call(
                    url=f"{server.url}/n",
                    headers={"X-Answer": "{{ pipe_result('a') }}"},
                    json={"n": "{{ pipe_result('a') }}", "label": "n={{ pipe_result('a') }}"},
                ),
            ],
        }
    )

    assert result.succeeded, result.message
    [hit] = server.hits("/n")
    assert hit.json() == {"n": 42, "label": "n=42"}
    assert hit.headers["x-answer"] == "42"


async def test_template_text_in_a_response_stays_literal(server: HttpServer) -> None:
    server.respond("/ticket", Reply(json={"title": "{{ 7*7 }}", "tags": ["{% raw %}"]}))
    server.respond("/echo", Reply(204))

    result, context = await execute(
        {
            "id": "flow",
            "steps": [
                call(url=f"{server.url}/ticket"),
                {
                    "id": "whole",
                    "use": "ExpressionPipe",
                    "params": {"expression": "{{ pipe_result('call', 'json').title }}"},
                },
                {
                    "id": "inside",
                    "use": "ExpressionPipe",
                    "params": {"expression": "title: {{ pipe_result('call', 'json').title }}"},
                },
                call(
                    "echo",
                    method="POST",
                    url=f"{server.url}/echo",
                    json={"got": "{{ pipe_result('call', 'json') }}"},
                ),
            ],
        }
    )

    assert result.succeeded, result.message
    assert context.results["whole"].data["value"] == "{{ 7*7 }}"
    assert context.results["inside"].data["value"] == "title: {{ 7*7 }}"
    [echo] = server.hits("/echo")
    assert echo.json() == {"got": {"title": "{{ 7*7 }}", "tags": ["{% raw %}"]}}


# -- retry ----------------------------------------------------------------------------------


async def test_retry_succeeds_on_the_third_attempt(server: HttpServer) -> None:
    server.respond("/flaky", Reply(500), Reply(500), Reply(200, json={"done": True}))
    run = call(url=f"{server.url}/flaky")
    run["retry"] = {"attempts": 3, "delay": 0.01}

    result, context = await execute(run)

    assert result.succeeded, result.message
    assert result.data["json"] == {"done": True}
    assert context.results["call"].data["status"] == 200
    hits = server.hits("/flaky")
    assert len(hits) == 3
    assert hits[0].at < hits[1].at < hits[2].at


async def test_retry_gives_up_after_its_attempts(server: HttpServer) -> None:
    server.respond("/down", Reply(503, text="maintenance"))
    run = call(url=f"{server.url}/down")
    run["retry"] = {"attempts": 3, "delay": 0.01}

    result, _ = await execute(run)

    assert result.failed
    assert "answered 503: maintenance (after 3 attempts)" in result.message
    assert result.data["status"] == 503
    assert len(server.hits("/down")) == 3


async def test_retry_on_names_the_connection_error() -> None:
    run = call(url=closed_port_url())
    run["retry"] = {"attempts": 2, "delay": 0.01, "on": ["ConnectError"]}

    result, _ = await execute(run)

    assert result.failed
    assert result.message.endswith("(after 2 attempts)")
    assert isinstance(result.error, httpx.ConnectError)


async def test_retry_on_an_exception_leaves_a_bad_status_alone(server: HttpServer) -> None:
    server.respond("/bad", Reply(500), Reply(200))
    run = call(url=f"{server.url}/bad")
    run["retry"] = {"attempts": 3, "delay": 0.01, "on": ["ConnectError"]}

    result, _ = await execute(run)

    assert result.failed
    assert len(server.hits("/bad")) == 1


# -- params checked at load -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "where", "says"),
    [
        ({"url": "ftp://x"}, "params.url", "http:// or https://"),
        ({"url": "http://"}, "params.url", "with a host"),
        ({"url": "example.com/api"}, "params.url", "http:// or https://"),
        ({"url": ""}, "params.url", "at least 1 character"),
        ({}, "params.url", "is required"),
        ({"url": "http://x", "method": "FETCH"}, "params.method", "'GET'"),
        ({"url": "http://x", "timeout": 0}, "params.timeout", "greater than 0"),
        ({"url": "http://x", "timeout": "soon"}, "params.timeout", "invalid duration"),
        ({"url": "http://x", "expect_status": []}, "params.expect_status", "at least one"),
        ({"url": "http://x", "expect_status": 1000}, "params.expect_status", "100 to 599"),
        ({"url": "http://x", "json": {"a": 1}, "body": "b"}, "params", "not both"),
        ({"url": "http://x", "query": {"q": {"deep": 1}}}, "params.query", "'q' must be"),
        ({"url": "http://x", "query": {"q": [[1]]}}, "params.query", "'q' must be"),
        ({"url": "http://x", "headers": {"X-A": [1]}}, "params.headers.X-A", "string"),
        ({"url": "http://x", "jsn": {}}, "params.jsn", "did you mean 'json'"),
    ],
)
def test_bad_params_are_config_errors(params: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pipeline(call(**params))

    [problem] = caught.value.problems
    assert problem.path == f"orchestrator.runners[0].run.{where}"
    assert says in problem.message
    assert problem.file == "config.yml"
    assert problem.line is not None


async def test_runs_share_one_pooled_client_closed_when_the_orchestrator_stops(
    server: HttpServer,
) -> None:
    import asyncio

    from open_ticket_ai.base.pipes import http_request_pipe
    from open_ticket_ai.runtime.orchestrator import Orchestrator

    server.respond("/ping", Reply(200, text="pong"))
    text = yaml.safe_dump(
        {
            "orchestrator": {
                "runners": [
                    {
                        "id": "r",
                        "on": [{"id": "hourly", "params": {"hours": 1}}],
                        "run": call(url=f"{server.url}/ping"),
                    }
                ]
            }
        }
    )
    orchestrator = Orchestrator(build(parse_config(text, "config.yml")), log=False)
    main = asyncio.create_task(orchestrator.run())
    await asyncio.sleep(0.05)
    runner = orchestrator.runners["r"]
    clients = []
    for _ in range(3):
        task = runner.fire(None)
        assert task is not None
        assert (await task).succeeded
        clients.append(http_request_pipe._CLIENTS[asyncio.get_running_loop()])
    assert clients[0] is clients[1] is clients[2]
    assert not clients[0].is_closed
    orchestrator.request_stop()
    assert await main == 0
    assert clients[0].is_closed
    assert len(server.hits("/ping")) == 3


async def test_a_failure_names_the_url_without_its_credentials() -> None:
    result, _ = await execute(call(url=f"{closed_port_url()}/x?api_token=s3cr3t"))
    assert result.failed
    assert "s3cr3t" not in result.message
    assert "api_token=***" in result.message
