"""Scale of set-up: load, validate and arm N runners. Prints one JSON line: seconds and RSS
growth in MB, measured from a process that has imported everything it needs."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from typing import Any

from bench.common import rss_mb
from bench.precision import INTERVAL, _config


async def ours(runners: int) -> None:
    from open_ticket_ai import parse_config
    from open_ticket_ai.runtime.startup import prepare

    text = _config(runners)
    orchestrator = prepare(lambda: parse_config(text, "bench.yml"))
    main = asyncio.ensure_future(orchestrator.run())
    await asyncio.sleep(0)  # runs until every trigger is armed and `ready` is logged
    orchestrator.request_stop()
    await main


async def floor(runners: int) -> None:
    loop = asyncio.get_running_loop()
    handles = [
        loop.call_at(loop.time() + INTERVAL + i / runners, lambda: None) for i in range(runners)
    ]
    for handle in handles:
        handle.cancel()


async def apscheduler(runners: int) -> None:
    from datetime import UTC

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def work() -> None:
        return None

    scheduler = AsyncIOScheduler(timezone=UTC)
    for i in range(runners):
        scheduler.add_job(work, "interval", seconds=INTERVAL, id=f"r{i}")
    scheduler.start()
    await asyncio.sleep(0)
    scheduler.shutdown(wait=False)


CONTENDERS = {"floor": floor, "ours": ours, "apscheduler": apscheduler}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    name, runners = sys.argv[1], int(sys.argv[2])
    import apscheduler.schedulers.asyncio  # noqa: F401  (imports are not set-up cost)

    import open_ticket_ai.base
    import open_ticket_ai.runtime.orchestrator  # noqa: F401

    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    asyncio.run(CONTENDERS[name](runners))
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"seconds": elapsed, "rss_mb": rss_mb() - before}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
