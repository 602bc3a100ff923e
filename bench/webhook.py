"""Webhook throughput: ``otai run`` (a subprocess) with one HMAC-signed WebhookTrigger per
client connection, each firing its own no-op-ish runner, against a floor: a bare uvicorn ASGI
callable (no Starlette, no orchestrator) that reads the body, checks the same HMAC and answers
202. Raw-socket keep-alive clients on 127.0.0.1 send the same signed JSON webhooks back to
back to either. Prints one JSON line: requests per second, latency percentiles, and how many
were accepted (202) or refused as busy (409).

    python -m bench.webhook [--contender ours|floor] [--connections 8] [--seconds 5]
    python -m bench.webhook floor PORT     # serve the floor on 127.0.0.1:PORT (until SIGTERM)

Every wait has a timeout: a contender that does not start, stops answering or answers
something else than 202/409 ends the run with a message naming it, and is always stopped.
:func:`run_driver` runs this module in its own session and stops the whole process group
when it overruns, so no contender outlives the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, percentile

SECRET = "bench-secret"
BODY = json.dumps({"ticket": {"id": 42, "subject": "Printer on fire", "queue": "IT"}}).encode()

CONTENDERS = ("ours", "floor")
READY_TIMEOUT = 30.0
"""Seconds a contender may take to answer the first signed webhook with 202."""
REQUEST_TIMEOUT = 10.0
"""Seconds a contender may take to answer one request of the measurement."""
STOP_TIMEOUT = 10.0
"""Seconds a contender may take to exit after SIGTERM before it is killed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, port: int, connections: int) -> Path:
    runners = [
        {
            "id": f"r{i}",
            "on": [
                {
                    "id": f"hook{i}",
                    "use": "WebhookTrigger",
                    "params": {"secret": "{{ env.OTAI_BENCH_SECRET }}", "auth": "hmac-sha256"},
                }
            ],
            "run": {
                "id": "echo",
                "use": "ExpressionPipe",
                "params": {"expression": "{{ trigger.payload.ticket.id }}"},
            },
        }
        for i in range(connections)
    ]
    path = directory / "webhook-bench.yml"
    document = {"orchestrator": {"http": {"port": port}, "runners": runners}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def request_bytes(
    trigger: str, port: int, *, sign: str | None = None, close: bool = False
) -> bytes:
    head = (
        f"POST /hooks/{trigger} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nX-Signature-256: {sign or signature(BODY)}\r\n"
        f"Content-Length: {len(BODY)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + BODY


# -- the floor ----------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_KEY = SECRET.encode()
_ACCEPTED = b'{"status":"accepted"}'
_UNAUTHORIZED = b'{"error":"bad signature"}'


async def floor_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A webhook at the HTTP level and nothing else: read the body, check its
    ``X-Signature-256`` HMAC-SHA256 against the secret, answer 202 (401 when it is wrong)."""
    if scope["type"] != "http":
        return
    given = b""
    for name, value in scope["headers"]:
        if name == b"x-signature-256":
            given = value
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    wanted = b"sha256=" + hmac.new(_KEY, b"".join(chunks), hashlib.sha256).hexdigest().encode()
    status, body = (202, _ACCEPTED) if hmac.compare_digest(given, wanted) else (401, _UNAUTHORIZED)
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _floor_protocol() -> type[asyncio.Protocol]:
    """What the listener's protocol builds on, as uvicorn ships it: its httptools protocol
    where httptools is installed, else its h11 one; with TCP_NODELAY on each connection, as
    the listener sets it (and nothing else of the listener's: no head deadline, and a
    response's head and body written as uvicorn writes them, apart)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class NoDelay(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    NoDelay.__name__ = f"NoDelay{base.__name__}"
    return NoDelay


def serve_floor(port: int) -> None:
    """Serve :func:`floor_app` on 127.0.0.1:``port`` with ``uvicorn.Server`` in this process,
    on the plain asyncio loop ``otai run`` uses, until SIGTERM/SIGINT."""
    import uvicorn

    config = uvicorn.Config(
        floor_app,
        host="127.0.0.1",
        port=port,
        interface="asgi3",
        http=_floor_protocol(),
        loop="asyncio",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


# -- the clients --------------------------------------------------------------------------


class ContenderError(RuntimeError):
    """A contender did not start, stopped answering or answered wrongly."""


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def client(
    name: str,
    port: int,
    trigger: str,
    deadline: float,
    budget: list[int],
    latencies: list[float],
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT
        )
    except (OSError, TimeoutError) as exc:
        raise ContenderError(f"{name}: cannot connect to 127.0.0.1:{port}: {exc!r}") from exc
    request = request_bytes(trigger, port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            try:
                status = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
            except TimeoutError as exc:
                raise ContenderError(
                    f"{name}: no answer within {REQUEST_TIMEOUT:g} s on /hooks/{trigger}"
                ) from exc
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
                raise ContenderError(
                    f"{name}: the connection for /hooks/{trigger} broke: {exc!r}"
                ) from exc
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2.0)
    return statuses


def process_cpu(pid: int) -> float | None:
    """Seconds of CPU (user and system, every thread) process ``pid`` has used so far; None
    where ``/proc`` cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def drive(
    name: str, port: int, connections: int, seconds: float, requests: int, pid: int | None = None
) -> dict[str, Any]:
    # Warm-up: every connection path once, then a short burst not counted.
    warm: list[float] = []
    await asyncio.gather(
        *(
            client(name, port, f"hook{i}", time.perf_counter() + 1, [50], warm)
            for i in range(connections)
        )
    )
    latencies: list[float] = []
    budget = [requests]
    cpu_before = process_cpu(pid) if pid is not None else None
    started = time.perf_counter()
    deadline = started + seconds
    results = await asyncio.gather(
        *(client(name, port, f"hook{i}", deadline, budget, latencies) for i in range(connections))
    )
    elapsed = time.perf_counter() - started
    cpu_after = process_cpu(pid) if pid is not None else None
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result.items():
            statuses[status] = statuses.get(status, 0) + count
    wrong = {s: c for s, c in statuses.items() if s not in (202, 409)}
    if wrong:
        raise ContenderError(f"{name}: answered with other statuses than 202/409: {wrong}")
    if not statuses.get(202):
        raise ContenderError(f"{name}: accepted no request ({statuses})")
    ms = [x * 1000 for x in latencies]
    return {
        "contender": name,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "connections": connections,
        # The contender's own CPU (every thread) per request answered: what it costs, apart
        # from the clients sharing the machine with it.
        "cpu_us_per_request": (
            round((cpu_after - cpu_before) / len(latencies) * 1e6, 1)
            if cpu_before is not None and cpu_after is not None
            else None
        ),
        "accepted": statuses.get(202, 0),
        "refused": statuses.get(409, 0),
    }


def _probe(port: int, request: bytes) -> int | None:
    """The status of one request on a fresh connection, or None when nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(request)
            answer = b""
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                answer += chunk
            return int(answer.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


def wait_ready(name: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the contender accepts a signed webhook (202) and refuses a badly signed
    one (401): both serve the same signed requests, and both really check the signature."""
    deadline = time.monotonic() + READY_TIMEOUT
    last: int | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ContenderError(f"{name} exited with {proc.returncode}{_tail(log)}")
        last = _probe(port, request_bytes("hook0", port, close=True))
        if last == 202:
            bad = _probe(port, request_bytes("hook0", port, sign="sha256=" + "0" * 64, close=True))
            if bad != 401:
                raise ContenderError(f"{name} answered a bad signature with {bad}, not 401")
            return
        time.sleep(0.05)
    raise ContenderError(
        f"{name} did not accept a signed webhook within {READY_TIMEOUT:g} s "
        f"(last answer: {last or 'none'}){_tail(log)}"
    )


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip()
        if text:
            return "; its stderr ends:\n" + text[-2000:]
    return ""


def _die_with_parent() -> None:
    """In the contender, before exec: SIGTERM when this driver dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(
    name: str, port: int, directory: Path, connections: int, log_level: str, log: Path
) -> subprocess.Popen[bytes]:
    if name == "floor":
        command = [sys.executable, "-m", "bench.webhook", "floor", str(port)]
    else:
        config = write_config(directory, port, connections)
        log_options = ("--log-level", log_level, "--log-format", "json")
        command = [sys.executable, "-m", "open_ticket_ai", "run", str(config), *log_options]
    with log.open("wb") as stderr:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "OTAI_BENCH_SECRET": SECRET},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(name: str, connections: int, seconds: float, requests: int, log_level: str) -> Any:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "stderr.log"
        proc = start(name, port, Path(tmp), connections, log_level, log)
        try:
            wait_ready(name, port, proc, log)
            work = drive(name, port, connections, seconds, requests, proc.pid)
            limit = seconds + 1 + 3 * REQUEST_TIMEOUT
            try:
                result = asyncio.run(asyncio.wait_for(work, limit))
            except TimeoutError as exc:
                raise ContenderError(f"{name}: the measurement overran {limit:g} s") from exc
            if proc.poll() is not None:
                raise ContenderError(f"{name} exited with {proc.returncode}{_tail(log)}")
        finally:
            stop(proc)
    return result


def run_driver(contender: str, connections: int, seconds: float) -> dict[str, Any]:
    """Run ``python -m bench.webhook`` for one contender in a fresh interpreter and its own
    session; return its JSON line. Raise ContenderError with its message when it fails, and
    when it overruns stop it and everything it started (its process group)."""
    timeout = READY_TIMEOUT + seconds + 1 + 3 * REQUEST_TIMEOUT + 2 * STOP_TIMEOUT + 10
    args = ["--contender", contender, "--connections", str(connections), "--seconds", str(seconds)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            out, err = proc.communicate()
            raise ContenderError(
                f"{contender} at {connections} connection(s) did not finish within "
                f"{timeout:g} s; stopped it{_last_line(err)}"
            ) from None
    finally:
        _stop_group(proc)
    if proc.returncode != 0:
        raise ContenderError(
            f"{contender} at {connections} connection(s) failed (exit {proc.returncode})"
            f"{_last_line(err)}"
        )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _last_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    # The driver ends with ``bench.webhook: <message>`` (which may span lines).
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("bench.webhook: "):
            return ":\n" + "\n".join(lines[index:])[-3000:]
    return ":\n" + "\n".join(lines[-15:])


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the driver's process group (it and any contender it left), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)  # raises ProcessLookupError once the group is empty
            proc.poll()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    if sys.argv[1:2] == ["floor"]:
        serve_floor(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", choices=CONTENDERS, default="ours")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    # SIGTERM (the bench stopping an overrun) unwinds, so the contender is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = measure(
            args.contender, args.connections, args.seconds, args.requests, args.log_level
        )
    except ContenderError as exc:
        sys.exit(f"bench.webhook: {exc}")
    result["log_level"] = args.log_level.upper()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
