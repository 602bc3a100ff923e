"""Pipeline throughput: one runner whose CompositePipe has three templated ExpressionPipe
steps, fired back to back. ``python -m bench.throughput [off|on]``: with ``on`` the run
ledger records every run to a SQLite file in a temporary directory. Prints one JSON line
with executions per second (and, with the ledger, what it holds afterwards)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ledger_rows
from open_ticket_ai import build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator

WARMUP = 200
WRITER = "otai-ledger"
"""The name of the ledger's writer thread (see Ledger.start)."""
SECONDS = 3.0

STEPS = """
    run:
      id: pipeline
      params: {base: 10}
      steps:
        - id: a
          use: ExpressionPipe
          params: {expression: "{{ parent.base * 2 }}"}
        - id: b
          use: ExpressionPipe
          params: {expression: "{{ pipe_result('a') + 1 }}"}
        - id: c
          use: ExpressionPipe
          params: {expression: "total {{ pipe_result('b') }} for {{ runner }}"}
"""


def config(ledger: Path | None) -> str:
    """The throughput runner; ``ledger`` None turns the ledger off explicitly."""
    setting = (
        "false"
        if ledger is None
        else f"{{path: {json.dumps(str(ledger))}, retention: 30d, max_runs: 1000000}}"
    )
    return f"orchestrator:\n  ledger: {setting}\n  runners:\n  - id: throughput{STEPS}"


def process_cpu(pid: int | None) -> float:
    """CPU seconds the live process ``pid`` has used (0.0 for None or one that is gone)."""
    import os

    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def writer_cpu(orchestrator: Orchestrator) -> float:
    """CPU seconds of the ledger's writing: its thread here and its process, if any."""
    store = orchestrator.ledger.store if orchestrator.ledger is not None else None
    return thread_cpu(WRITER) + process_cpu(getattr(store, "writer_pid", None))


def thread_cpu(name: str) -> float:
    """CPU seconds the live thread called ``name`` has used (0.0 when there is none)."""
    import os

    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


async def measure(seconds: float, ledger: Path | None = None) -> dict[str, Any]:
    orchestrator = Orchestrator(build(parse_config(config(ledger), "bench.yml")))
    if ledger is not None:
        # Orchestrator.run() starts the writer; this bench fires the runner directly.
        assert orchestrator.ledger is not None, "the ledger is configured but was not opened"
        orchestrator.ledger.start()
    else:
        assert orchestrator.ledger is None
    runner = orchestrator.runners["throughput"]
    for _ in range(WARMUP):
        task = runner.fire(None)
        assert task is not None
        await task
    if orchestrator.ledger is not None:
        # The warm-up's runs written: the writer (and its process) is up before measuring.
        assert await asyncio.to_thread(orchestrator.ledger.flush, 30.0), "ledger flush failed"
    count = 0
    loop_cpu, writer = time.thread_time(), writer_cpu(orchestrator)
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            task = runner.fire(None)
            assert task is not None
            result = await task
            assert result.succeeded, result.message
        count += 100
    elapsed = time.perf_counter() - started
    loop_cpu, writer = time.thread_time() - loop_cpu, writer_cpu(orchestrator) - writer
    report: dict[str, Any] = {
        "executions": count,
        "per_second": count / elapsed,
        "loop_cpu_us": loop_cpu / count * 1e6,
        "writer_cpu_us": writer / count * 1e6,
    }
    if orchestrator.ledger is not None and ledger is not None:
        book = orchestrator.ledger
        report["pending_at_end"] = book.pending
        closing = time.perf_counter()
        orchestrator.close()  # writes what is pending, then closes the store
        report["close_s"] = time.perf_counter() - closing
        report["dropped"] = book.dropped
        report["failures"] = book.failures
        report["runs"] = WARMUP + count
        report["rows"] = ledger_rows(ledger)
    else:
        orchestrator.close()
    return report


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    mode = sys.argv[1] if len(sys.argv) > 1 else "off"
    if mode not in ("off", "on"):
        raise SystemExit(f"usage: python -m bench.throughput [off|on], not {mode!r}")
    if mode == "off":
        print(json.dumps(asyncio.run(measure(SECONDS))))
        return
    with tempfile.TemporaryDirectory(prefix="otai-bench-") as directory:
        path = Path(directory) / "ledger.sqlite"
        print(json.dumps(asyncio.run(measure(SECONDS, path))))


if __name__ == "__main__":
    main()
