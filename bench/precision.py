"""Scheduling precision: N runners on a 1 s interval, phases spread over it, a no-op pipeline.

Run one contender per process: ``python -m bench.precision CONTENDER RUNNERS SECONDS``
(``ours+ledger`` is ``ours`` with the run ledger on, in a temporary directory).
Prints one JSON line: fires, lateness p50/p99/max (ms) and CPU time per fire (us).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import LatenessPipe, ledger_rows, percentile

INTERVAL = 1.0
WARMUP = 2.0


def _report(samples: list[float], cpu: float, fires: int) -> dict[str, Any]:
    return {
        "fires": fires,
        "p50_ms": percentile(samples, 0.50) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000 if samples else float("nan"),
        "cpu_us_per_fire": cpu / fires * 1e6 if fires else float("nan"),
    }


async def _measure(
    samples: list[float], seconds: float, helpers: Callable[[], float] | None = None
) -> dict[str, Any]:
    """Lateness and CPU per fire over ``seconds`` after the warm-up; ``helpers`` gives the
    CPU seconds of the contender's helper processes so far (counted in its CPU too)."""
    await asyncio.sleep(WARMUP)
    samples.clear()
    extra0 = helpers() if helpers is not None else 0.0
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    if helpers is not None:
        cpu += helpers() - extra0
    measured = list(samples)
    return _report(measured, cpu, len(measured))


async def floor(runners: int, seconds: float) -> dict[str, Any]:
    """One loop.call_at timer per runner; each fire runs the same no-op work in a task."""
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def work(anchor: float) -> None:
        samples.append((loop.time() - anchor) % INTERVAL)

    def fire(anchor: float, due: float) -> None:
        task = loop.create_task(work(anchor))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        loop.call_at(due + INTERVAL, fire, anchor, due + INTERVAL)

    start = loop.time()
    for i in range(runners):
        anchor = start + i * INTERVAL / runners
        loop.call_at(anchor + INTERVAL, fire, anchor, anchor + INTERVAL)
    return await _measure(samples, seconds)


def _config(runners: int, ledger: Path | None = None) -> str:
    """``runners`` spread runners; with ``ledger``, at the top of an ``orchestrator:`` mapping
    that keeps the run ledger in that file."""
    lines = ["runners:"]
    for i in range(runners):
        offset = i * INTERVAL / runners
        lines += [
            f"  - id: r{i}",
            f"    on: [{{id: t{i}, params: {{seconds: {INTERVAL}, offset: {offset!r}}}}}]",
            f"    run: {{id: p, use: 'bench.common:LatenessPipe', params: {{offset: {offset!r}}}}}",
        ]
    if ledger is not None:
        lines = [
            "orchestrator:",
            f"  ledger: {_ledger_setting(ledger)}",
            *(f"  {line}" for line in lines),
        ]
    return "\n".join(lines) + "\n"


def _ledger_setting(path: Path) -> str:
    """The ledger in ``path``, kept so that nothing is pruned while measuring: 12 s at 10,000
    fires/s are 120,000 runs, well under ``max_runs``, and none is older than ``retention``
    (the writer prunes when it starts, on an empty file here, then once an hour)."""
    return f"{{path: {json.dumps(str(path))}, retention: 30d, max_runs: 1000000}}"


async def ours(runners: int, seconds: float, ledger: Path | None = None) -> dict[str, Any]:
    from open_ticket_ai import parse_config
    from open_ticket_ai.runtime.startup import prepare

    text = _config(runners, ledger)
    orchestrator = prepare(lambda: parse_config(text, "bench.yml"))
    assert (orchestrator.ledger is None) == (ledger is None), "ledger not as configured"
    LatenessPipe.interval = INTERVAL
    main = asyncio.ensure_future(orchestrator.run())
    await asyncio.sleep(0)
    LatenessPipe.anchor = orchestrator.started_at
    try:
        report = await _measure(LatenessPipe.samples, seconds, lambda: _writer_cpu(orchestrator))
        if orchestrator.ledger is not None:
            report["ledger_pending"] = orchestrator.ledger.pending
            report["ledger_dropped"] = orchestrator.ledger.dropped
    finally:
        orchestrator.request_stop()
        await main  # run() ends with close(): the ledger writes what is pending
    if orchestrator.ledger is not None and ledger is not None:
        book = orchestrator.ledger
        report["ledger_written"] = book.written
        report["ledger_left"] = book.pending  # not written within close()'s timeout
        report["ledger_dropped_total"] = book.dropped
        report["ledger_failures"] = book.failures
        report["ledger_rows"] = ledger_rows(ledger)
        report["runs_started"] = sum(r.stats.runs for r in orchestrator.runners.values())
    return report


def _writer_cpu(orchestrator: Any) -> float:
    """CPU seconds of the ledger's writer process so far (0.0 without one)."""
    from bench.throughput import process_cpu

    store = orchestrator.ledger.store if orchestrator.ledger is not None else None
    return process_cpu(getattr(store, "writer_pid", None))


async def ours_ledger(runners: int, seconds: float) -> dict[str, Any]:
    """``ours`` with the run ledger on, in a SQLite file in a temporary directory.

    CPU per fire is the whole process's and its ledger writer process's: the packing on the
    loop and the writing are counted."""
    with tempfile.TemporaryDirectory(prefix="otai-bench-") as directory:
        return await ours(runners, seconds, Path(directory) / "ledger.sqlite")


CONSOLE_USER = "bench"
CONSOLE_PASSWORD = "bench-console-password"


async def ours_console(runners: int, seconds: float) -> dict[str, Any]:
    """``ours`` with the HTTP listener and the console on, and a logged-in page's live
    stream open in another process the whole time (every run's end reaches it)."""
    import signal
    import subprocess

    from open_ticket_ai import parse_config
    from open_ticket_ai.http.console.auth import hash_password
    from open_ticket_ai.http.listener import start_listener
    from open_ticket_ai.runtime.startup import prepare

    users = f"{{{CONSOLE_USER}: {{password_hash: '{hash_password(CONSOLE_PASSWORD)}'}}}}"
    http = f"  http: {{port: 0, console: true, console_users: {users}}}"
    text = (
        "orchestrator:\n"
        + http
        + "\n"
        + "".join(f"  {line}\n" for line in _config(runners).splitlines())
    )
    orchestrator = prepare(lambda: parse_config(text, "bench.yml"))
    orchestrator._listener_factory = start_listener
    LatenessPipe.interval = INTERVAL
    main = asyncio.ensure_future(orchestrator.run())
    for _ in range(3000):
        if orchestrator._listener is not None:
            break
        await asyncio.sleep(0.01)
    assert orchestrator._listener is not None, "the listener did not start"
    LatenessPipe.anchor = orchestrator.started_at
    url = f"http://127.0.0.1:{orchestrator._listener.port}"
    page = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.precision", "console-page", url, stdout=subprocess.PIPE
    )
    try:
        report = await _measure(LatenessPipe.samples, seconds)
    finally:
        page.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(page.communicate(), 30)
        orchestrator.request_stop()
        await main
    report["live_events"] = int(out.decode().strip() or 0)
    return report


def console_page(url: str) -> None:
    """A logged-in console page: reads its live stream until SIGTERM, then prints how many
    run events arrived."""
    import re
    import signal

    import httpx

    seen = 0

    def stop(*_: object) -> None:
        print(seen, flush=True)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    with httpx.Client(base_url=url, timeout=None) as client:
        form = client.get("/login").text
        match = re.search(r'name="csrf" value="([^"]+)"', form)
        assert match, "no login form"
        done = client.post(
            "/login",
            data={"user": CONSOLE_USER, "password": CONSOLE_PASSWORD, "csrf": match.group(1)},
        )
        assert done.status_code == 303, done.text
        with client.stream("GET", "/console/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    seen += 1


def _shared_config(runners: int, spread: bool) -> str:
    from open_ticket_ai.core.triggers.timing import spread_phase

    lines = ["runners:"]
    for i in range(runners):
        offset = spread_phase("t", f"r{i}", INTERVAL) if spread else 0.0
        trigger = (
            f"[{{id: t, params: {{seconds: {INTERVAL}, spread: {str(spread).lower()}}}}}]"
            if i == 0
            else "[t]"
        )
        lines += [
            f"  - id: r{i}",
            f"    on: {trigger}",
            f"    run: {{id: p, use: 'bench.common:LatenessPipe', params: {{offset: {offset!r}}}}}",
        ]
    return "\n".join(lines) + "\n"


async def _shared(runners: int, seconds: float, spread: bool) -> dict[str, Any]:
    from open_ticket_ai import parse_config
    from open_ticket_ai.runtime.startup import prepare

    text = _shared_config(runners, spread)
    orchestrator = prepare(lambda: parse_config(text, "bench.yml"))
    LatenessPipe.interval = INTERVAL
    main = asyncio.ensure_future(orchestrator.run())
    await asyncio.sleep(0)
    LatenessPipe.anchor = orchestrator.started_at
    try:
        return await _measure(LatenessPipe.samples, seconds)
    finally:
        orchestrator.request_stop()
        await main


async def shared(runners: int, seconds: float) -> dict[str, Any]:
    """Every runner on ONE shared interval trigger: all fire in the same instant."""
    return await _shared(runners, seconds, spread=False)


async def shared_spread(runners: int, seconds: float) -> dict[str, Any]:
    """Every runner on ONE shared interval trigger with ``spread: true``."""
    return await _shared(runners, seconds, spread=True)


async def apscheduler(runners: int, seconds: float) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    samples: list[float] = []
    base = time.time() + 0.5

    async def work(anchor: float) -> None:
        samples.append((time.time() - anchor) % INTERVAL)

    scheduler = AsyncIOScheduler(timezone=UTC)
    for i in range(runners):
        anchor = base + i * INTERVAL / runners
        scheduler.add_job(
            work,
            "interval",
            seconds=INTERVAL,
            start_date=datetime.fromtimestamp(anchor, UTC) + timedelta(seconds=0),
            args=[anchor],
            id=f"r{i}",
            max_instances=1,
            misfire_grace_time=None,
            coalesce=True,
        )
    scheduler.start()
    try:
        return await _measure(samples, seconds)
    finally:
        scheduler.shutdown(wait=False)


CONTENDERS = {
    "floor": floor,
    "ours": ours,
    "ours+ledger": ours_ledger,
    "ours+console": ours_console,
    "apscheduler": apscheduler,
    "shared": shared,
    "shared_spread": shared_spread,
}


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    if sys.argv[1] == "console-page":
        console_page(sys.argv[2])
        return
    name, runners, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    result = asyncio.run(CONTENDERS[name](runners, seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
