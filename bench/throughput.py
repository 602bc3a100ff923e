"""Pipeline throughput: one runner whose CompositePipe has three templated ExpressionPipe
steps, fired back to back. Prints one JSON line with executions per second."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from open_ticket_ai import build, parse_config
from open_ticket_ai.core.orchestration.orchestrator import Orchestrator

CONFIG = """
runners:
  - id: throughput
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


async def measure(seconds: float) -> dict[str, float]:
    orchestrator = Orchestrator(build(parse_config(CONFIG, "bench.yml")))
    runner = orchestrator.runners["throughput"]
    for _ in range(200):  # warm up
        task = runner.fire(None)
        assert task is not None
        await task
    count = 0
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
    return {"executions": count, "per_second": count / elapsed}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(measure(3.0))))


if __name__ == "__main__":
    main()
