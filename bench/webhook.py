"""Webhook throughput: ``otai run`` (a subprocess) with one HMAC-signed WebhookTrigger per
client connection, each firing its own no-op-ish runner; raw-socket keep-alive clients on
127.0.0.1 send signed JSON webhooks back to back. Prints one JSON line: requests per second,
latency percentiles, and how many were accepted (202) or refused as busy (409).

    python -m bench.webhook [--connections 8] [--seconds 5] [--requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, percentile

SECRET = "bench-secret"
BODY = json.dumps({"ticket": {"id": 42, "subject": "Printer on fire", "queue": "IT"}}).encode()


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


def request_bytes(trigger: str, port: int) -> bytes:
    signature = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    head = (
        f"POST /hooks/{trigger} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nX-Signature-256: sha256={signature}\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


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
    port: int, trigger: str, deadline: float, budget: list[int], latencies: list[float]
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = request_bytes(trigger, port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        await writer.wait_closed()
    return statuses


async def drive(port: int, connections: int, seconds: float, requests: int) -> dict[str, Any]:
    # Warm-up: every connection path once, then a short burst not counted.
    warm: list[float] = []
    await asyncio.gather(
        *(client(port, f"hook{i}", time.perf_counter() + 1, [50], warm) for i in range(connections))
    )
    latencies: list[float] = []
    budget = [requests]
    started = time.perf_counter()
    deadline = started + seconds
    results = await asyncio.gather(
        *(client(port, f"hook{i}", deadline, budget, latencies) for i in range(connections))
    )
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result.items():
            statuses[status] = statuses.get(status, 0) + count
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "connections": connections,
        "accepted": statuses.get(202, 0),
        "refused": statuses.get(409, 0),
        "other": sum(c for s, c in statuses.items() if s not in (202, 409)),
    }


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"otai run exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("otai run did not start listening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), port, args.connections)
        env = {**os.environ, "OTAI_BENCH_SECRET": SECRET}
        log_options = ("--log-level", args.log_level, "--log-format", "json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "open_ticket_ai", "run", str(config), *log_options],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, proc)
            result = asyncio.run(drive(port, args.connections, args.seconds, args.requests))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    result["log_level"] = args.log_level.upper()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
