"""The test HTTP server itself: recording, scripted replies, sequences, delays, shutdown."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from tests.support.http_server import HttpServer, Reply, closed_port_url


def test_records_each_request() -> None:
    with HttpServer() as server, httpx.Client() as client:
        server.respond("/echo", Reply(201, json={"ok": True}))
        before = time.monotonic()
        response = client.post(
            f"{server.url}/echo?a=1&a=2&b=",
            content=b'{"n": 7}',
            headers={"X-Token": "secret", "Content-Type": "application/json"},
        )
        after = time.monotonic()

    assert response.status_code == 201
    assert response.json() == {"ok": True}
    assert response.headers["content-type"] == "application/json"
    [hit] = server.hits()
    assert (hit.method, hit.path) == ("POST", "/echo")
    assert hit.query == {"a": ["1", "2"], "b": [""]}
    assert hit.headers["x-token"] == "secret"
    assert hit.json() == {"n": 7}
    assert before <= hit.at <= after


def test_hits_filter_by_path_and_return_a_copy() -> None:
    with HttpServer() as server, httpx.Client() as client:
        client.get(f"{server.url}/a")
        client.delete(f"{server.url}/b")
        client.get(f"{server.url}/a")
        hits = server.hits("/a")
        hits.clear()
        assert [h.method for h in server.hits("/a")] == ["GET", "GET"]
        assert [h.path for h in server.hits()] == ["/a", "/b", "/a"]


def test_unscripted_path_answers_404_and_is_recorded() -> None:
    with HttpServer() as server, httpx.Client() as client:
        response = client.get(f"{server.url}/nowhere")
    assert response.status_code == 404
    assert "/nowhere" in response.text
    assert len(server.hits("/nowhere")) == 1


def test_text_reply_with_content_type_and_headers() -> None:
    with HttpServer() as server, httpx.Client() as client:
        server.respond(
            "/t", Reply(text="<p>hi</p>", content_type="text/html", headers={"X-Extra": "1"})
        )
        response = client.get(f"{server.url}/t")
        head = client.head(f"{server.url}/t")
    assert response.text == "<p>hi</p>"
    assert response.headers["content-type"] == "text/html"
    assert response.headers["x-extra"] == "1"
    assert head.status_code == 200
    assert head.content == b""


def test_reply_with_json_and_text_is_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        Reply(json={}, text="x").encode()


def test_sequence_replies_in_turn_then_repeats_the_last() -> None:
    with HttpServer() as server, httpx.Client() as client:
        server.respond("/flaky", Reply(500, text="boom"), Reply(503), Reply(200, json=[1]))
        statuses = [client.get(f"{server.url}/flaky").status_code for _ in range(5)]
    assert statuses == [500, 503, 200, 200, 200]


def test_delay_holds_the_reply_back() -> None:
    with HttpServer() as server, httpx.Client() as client:
        server.respond("/slow", Reply(json="late", delay=0.3))
        started = time.monotonic()
        response = client.get(f"{server.url}/slow")
        elapsed = time.monotonic() - started
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{server.url}/slow", timeout=0.05)
    assert response.json() == "late"
    assert elapsed >= 0.25
    assert len(server.hits("/slow")) == 2


def test_close_drops_a_delayed_reply_without_waiting_for_it() -> None:
    with HttpServer() as server:
        server.respond("/stuck", Reply(delay=60))
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /stuck HTTP/1.0\r\n\r\n")
            server.wait_for_hits(1, "/stuck")
            started = time.monotonic()
            server.close()
            assert time.monotonic() - started < 30  # far less than the 60 s delay
            assert conn.recv(1024) == b""
        server.close()  # again: harmless
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(server.url)


def test_wait_for_hits_sees_requests_from_other_threads() -> None:
    with HttpServer() as server:

        def send(i: int) -> None:
            with httpx.Client() as client:
                client.get(f"{server.url}/n", params={"i": i})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        hits = server.wait_for_hits(20, "/n")
        for thread in threads:
            thread.join()
    assert sorted(int(h.query["i"][0]) for h in hits) == list(range(20))


def test_wait_for_hits_times_out_naming_what_arrived() -> None:
    with HttpServer() as server, httpx.Client() as client:
        client.get(f"{server.url}/other")
        with pytest.raises(TimeoutError, match=r"GET /other"):
            server.wait_for_hits(1, "/wanted", timeout=0.1)


def test_url_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = HttpServer().url


def test_closed_port_url_refuses_connections() -> None:
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(closed_port_url())
