"""Shared pieces: the no-op pipe, percentiles, RSS, counting a ledger's runs, and running a
contender in a subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from open_ticket_ai import Pipe, PipeContext, PipeResult
from open_ticket_ai.core.component import ParamsModel

ROOT = Path(__file__).resolve().parent.parent


class NoopParams(ParamsModel):
    offset: float = 0.0


_DONE = PipeResult.success()


class LatenessPipe(Pipe[NoopParams]):
    """Does nothing but note how late it started against its runner's grid."""

    interval = 1.0
    anchor = 0.0
    samples: list[float] = []

    async def process(self, ctx: PipeContext) -> PipeResult:
        now = asyncio.get_running_loop().time()
        LatenessPipe.samples.append(
            (now - LatenessPipe.anchor - self.params.offset) % self.interval
        )
        return _DONE


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def ledger_rows(path: Path) -> int:
    """Runs in the ledger file at ``path``, read as ``otai runs`` reads it (read-only, while
    or after the service writes it). Raises when the file is no ledger (none was written)."""
    import sqlite3
    from contextlib import closing

    from open_ticket_ai.runtime.ledger import SqliteLedgerStore

    SqliteLedgerStore(path, readonly=True).close()  # a ledger, of a schema this code knows
    with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM runs").fetchone()
    return int(count)


def run_child(module: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m bench.<module> args`` in a fresh interpreter; return its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
