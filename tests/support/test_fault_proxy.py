"""The fault proxy itself: plain forwarding, keep-alive, and each way of losing an answer."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.support.fault_proxy import FaultProxy, Hit
from tests.support.http_server import HttpServer, Reply, closed_port_url

SAVED = Reply(201, json={"id": 42, "title": "printer on fire", "padding": "x" * 200})


@pytest.fixture
def upstream() -> Iterator[HttpServer]:
    with HttpServer() as server:
        server.respond("/tickets", SAVED)
        yield server


@pytest.fixture
def proxy(upstream: HttpServer) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url) as proxy:
        yield proxy


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def _raw(proxy: FaultProxy, request: bytes, timeout: float = 3.0) -> bytes:
    """Send ``request`` on a fresh socket and read until the proxy closes it."""
    with socket.create_connection(("127.0.0.1", _port(proxy.url)), timeout=timeout) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def _post_tickets(body: bytes = b'{"title": "printer on fire"}') -> bytes:
    return (
        b"POST /tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def test_forwards_method_target_headers_and_body_and_relays_the_answer(
    upstream: HttpServer, proxy: FaultProxy
) -> None:
    upstream.respond(
        "/echo",
        Reply(
            202,
            text="<p>ok</p>",
            content_type="text/html",
            headers={"X-Extra": "1", "Set-Cookie": "a=1"},
        ),
    )
    with httpx.Client() as client:
        response = client.post(
            f"{proxy.url}/echo?a=1&a=2&b=",
            content=b'{"n": 7}',
            headers={
                "X-Token": "secret",
                "Content-Type": "application/json",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic eDp5",
            },
        )
        missing = client.get(f"{proxy.url}/nowhere")
    assert response.status_code == 202
    assert response.text == "<p>ok</p>"
    assert response.headers["content-type"] == "text/html"
    assert response.headers["x-extra"] == "1"
    assert response.headers["set-cookie"] == "a=1"
    assert response.headers["content-length"] == str(len("<p>ok</p>"))
    assert missing.status_code == 404
    assert "/nowhere" in missing.text
    [hit] = upstream.hits("/echo")
    assert (hit.method, hit.query, hit.body) == ("POST", {"a": ["1", "2"], "b": [""]}, b'{"n": 7}')
    assert hit.headers["x-token"] == "secret"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["host"] == upstream.url.removeprefix("http://")
    assert "keep-alive" not in hit.headers
    assert "proxy-authorization" not in hit.headers
    assert proxy.hits == [("POST", "/echo?a=1&a=2&b=", None), ("GET", "/nowhere", None)]


def test_every_method_and_a_chunked_request_body_are_forwarded(
    upstream: HttpServer, proxy: FaultProxy
) -> None:
    def parts() -> Iterator[bytes]:
        yield b"first "
        yield b"second"

    with httpx.Client() as client:
        for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
            assert client.request(method, f"{proxy.url}/tickets").status_code == 201
        head = client.head(f"{proxy.url}/tickets")
        chunked = client.post(f"{proxy.url}/tickets", content=parts())
    assert head.status_code == 201
    assert head.content == b""
    assert head.headers["content-length"] == str(len(SAVED.encode()[0]))
    assert chunked.json()["id"] == 42
    hits = upstream.hits("/tickets")
    assert [h.method for h in hits] == ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "POST"]
    assert hits[-1].body == b"first second"
    assert hits[-1].headers["content-length"] == "12"
    assert "transfer-encoding" not in hits[-1].headers


def test_url_keeps_the_upstream_path() -> None:
    with HttpServer() as upstream, FaultProxy(f"{upstream.url}/api/ws/") as proxy:
        upstream.respond("/api/ws/Ticket", Reply(json={"ok": True}))
        assert proxy.url == f"http://127.0.0.1:{_port(proxy.url)}/api/ws"
        response = httpx.get(f"{proxy.url}/Ticket")
    assert response.json() == {"ok": True}
    assert [h.path for h in upstream.hits()] == ["/api/ws/Ticket"]


def test_keep_alive_towards_the_client(upstream: HttpServer, proxy: FaultProxy) -> None:
    with httpx.Client() as client:
        statuses = [client.post(f"{proxy.url}/tickets").status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    assert proxy.connections == 1
    assert len(upstream.hits("/tickets")) == 3  # HttpServer closes each of its connections

    # Two requests written at once on one socket get two answers, then the close asked for.
    two = _post_tickets() + b"GET /tickets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received = _raw(proxy, two)
    assert received.count(b"HTTP/1.1 201 Created\r\n") == 2
    assert received.count(b'"id": 42') == 2
    assert received.endswith(SAVED.encode()[0])


def test_upstream_chunked_answer_is_relayed_with_a_length() -> None:
    body = b'{"id": 9}'
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
                b"Content-Type: application/json\r\n\r\n4\r\n"
                + body[:4]
                + b"\r\n5\r\n"
                + body[4:]
                + b"\r\n0\r\n\r\n"
            )

    thread = threading.Thread(target=serve_one)
    thread.start()
    try:
        with FaultProxy(f"http://127.0.0.1:{listener.getsockname()[1]}") as proxy:
            response = httpx.get(f"{proxy.url}/rt", timeout=3)
    finally:
        thread.join(timeout=5)
        listener.close()
    assert response.json() == {"id": 9}
    assert response.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in response.headers
    assert "connection" not in response.headers


def test_unreachable_upstream_answers_502() -> None:
    with FaultProxy(closed_port_url()) as proxy, httpx.Client() as client:
        response = client.post(f"{proxy.url}/tickets", content=b"{}")
    assert response.status_code == 502
    assert "ConnectionRefusedError" in response.text


def test_500_after_saving(upstream: HttpServer, proxy: FaultProxy) -> None:
    proxy.inject("500_after_saving", path="/tickets")
    with httpx.Client() as client:
        lost = client.post(f"{proxy.url}/tickets", json={"title": "printer on fire"})
        again = client.post(f"{proxy.url}/tickets", json={"title": "printer on fire"})
    assert lost.status_code == 500
    assert lost.headers["content-type"] == "text/html"
    assert "<center>nginx</center>" in lost.text
    assert '"id"' not in lost.text
    assert again.status_code == 201  # times=1: disarmed, and the connection was kept
    assert proxy.connections == 1
    hits = upstream.hits("/tickets")
    assert [h.json() for h in hits] == [{"title": "printer on fire"}] * 2
    assert proxy.hits == [("POST", "/tickets", "500_after_saving"), ("POST", "/tickets", None)]


def test_close_after_saving(upstream: HttpServer, proxy: FaultProxy) -> None:
    proxy.inject("close_after_saving")
    with httpx.Client() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post(f"{proxy.url}/tickets", json={"title": "printer on fire"})
        assert len(upstream.hits("/tickets")) == 1
        assert client.post(f"{proxy.url}/tickets").status_code == 201
    proxy.inject("close_after_saving")
    assert _raw(proxy, _post_tickets()) == b""  # not a byte of an answer
    assert len(upstream.hits("/tickets")) == 3
    assert [h.fault for h in proxy.hits] == ["close_after_saving", None, "close_after_saving"]


def test_cut_response(upstream: HttpServer, proxy: FaultProxy) -> None:
    payload = SAVED.encode()[0]
    proxy.inject("cut_response", times=2)
    with (
        httpx.Client() as client,
        pytest.raises(httpx.RemoteProtocolError, match="complete message body"),
    ):
        client.post(f"{proxy.url}/tickets", json={"title": "printer on fire"})
    received = _raw(proxy, _post_tickets())
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 Created\r\n")
    assert f"Content-Length: {len(payload)}".encode() in head.split(b"\r\n")
    assert body == payload[: len(payload) // 2]
    assert len(upstream.hits("/tickets")) == 2
    assert [h.fault for h in proxy.hits] == ["cut_response", "cut_response"]


def test_cut_response_without_a_body_cuts_the_headers(
    upstream: HttpServer, proxy: FaultProxy
) -> None:
    upstream.respond("/empty", Reply(204))
    proxy.inject("cut_response", method="DELETE", path="/empty")
    with httpx.Client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.delete(f"{proxy.url}/empty")
    assert len(upstream.hits("/empty")) == 1


def test_timeout_after_saving(upstream: HttpServer, proxy: FaultProxy) -> None:
    proxy.hold = 0.6
    proxy.inject("timeout_after_saving")
    # ReadTimeout (not RemoteProtocolError): the client gave up before the proxy closed.
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(f"{proxy.url}/tickets", json={"title": "printer on fire"})
    assert len(upstream.hits("/tickets")) == 1

    # On the wire: nothing for ``hold`` seconds, then a close without an answer.
    proxy.hold = 0.3
    proxy.inject("timeout_after_saving")
    started = time.monotonic()
    assert _raw(proxy, _post_tickets()) == b""
    assert time.monotonic() - started >= 0.25
    assert len(upstream.hits("/tickets")) == 2


def test_inject_matches_method_path_and_times(upstream: HttpServer, proxy: FaultProxy) -> None:
    upstream.respond("/tickets/7/articles", Reply(201, json={"article": 1}))
    proxy.inject("500_after_saving", path=re.compile(r"/tickets/\d+/articles$"), times=2)
    proxy.inject("500_after_saving", method="PUT", path="/tickets?x=1")  # a substring, not a regex
    proxy.inject("500_after_saving", method=None, path=r"^/ticke\w+$")  # a regex
    with httpx.Client() as client:
        statuses = [
            client.get(f"{proxy.url}/tickets/7/articles").status_code,  # GET: not armed
            client.post(f"{proxy.url}/tickets/7/articles").status_code,
            client.post(f"{proxy.url}/tickets/7/articles?x").status_code,  # no match: $
            client.post(f"{proxy.url}/tickets/7/articles").status_code,
            client.post(f"{proxy.url}/tickets/7/articles").status_code,  # used up
            client.put(f"{proxy.url}/tickets", params={"x": 1}).status_code,
            client.put(f"{proxy.url}/tickets", params={"x": 1}).status_code,
            client.delete(f"{proxy.url}/tickets").status_code,  # the regex, any method
            client.delete(f"{proxy.url}/tickets").status_code,
        ]
    assert statuses == [201, 500, 201, 500, 201, 500, 201, 500, 201]
    assert [h.fault is not None for h in proxy.hits] == [s == 500 for s in statuses]
    assert isinstance(proxy.hits[0], Hit)


def test_reset_disarms_and_forgets(upstream: HttpServer, proxy: FaultProxy) -> None:
    proxy.inject("close_after_saving", times=5)
    with httpx.Client() as client:
        client.get(f"{proxy.url}/tickets")
        proxy.reset()
        assert proxy.hits == []
        assert proxy.connections == 0
        assert client.post(f"{proxy.url}/tickets").status_code == 201
    assert proxy.hits == [("POST", "/tickets", None)]


def test_inject_refuses_unknown_modes_and_times() -> None:
    with HttpServer() as upstream, FaultProxy(upstream.url) as proxy:
        with pytest.raises(ValueError, match="unknown fault mode"):
            proxy.inject("slow_loris")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least 1"):
            proxy.inject("cut_response", times=0)
    with pytest.raises(ValueError, match="http"):
        FaultProxy("ftp://127.0.0.1/")
    with pytest.raises(RuntimeError, match="not started"):
        _ = FaultProxy("http://127.0.0.1:1").url


def test_hits_are_recorded_from_many_threads(upstream: HttpServer, proxy: FaultProxy) -> None:
    with httpx.Client() as client:  # thread-safe; a pool of up to 100 connections

        def send(i: int) -> None:
            client.get(f"{proxy.url}/tickets", params={"i": i})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(h.target for h in proxy.hits) == sorted(f"/tickets?i={i}" for i in range(5))
    assert len(upstream.hits("/tickets")) == 5


def test_close_ends_idle_connections_and_held_answers(upstream: HttpServer) -> None:
    proxy = FaultProxy(upstream.url, hold=60)
    with proxy:
        proxy.inject("timeout_after_saving")
        idle = socket.create_connection(("127.0.0.1", _port(proxy.url)), timeout=5)
        held = socket.create_connection(("127.0.0.1", _port(proxy.url)), timeout=5)
        with idle, held:
            held.sendall(_post_tickets())
            upstream.wait_for_hits(1, "/tickets")
            started = time.monotonic()
            proxy.close()
            assert time.monotonic() - started < 2  # far less than the 60 s hold or 30 s idle
            assert held.recv(1024) == b""
            assert idle.recv(1024) == b""
        proxy.close()  # again: harmless
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url)
