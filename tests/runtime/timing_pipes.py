"""Pipes and a trigger for the timing tests: ``use: "tests.runtime.timing_pipes:X"``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

from open_ticket_ai import ParamsModel, Pipe, PipeContext, PipeResult, Service, TimeTrigger


class SleepParams(ParamsModel):
    seconds: float = 0.0
    ignore_cancel_for: float = 0.0
    """After a cancellation, keep running this long before giving in (a stubborn run)."""
    block: float = 0.0
    """Block the event loop this long (time.sleep in async code: what a watchdog catches)."""


class SleepPipe(Pipe[SleepParams]):
    """Sleeps; records (runner, "start"|"end", monotonic time) in :attr:`log`."""

    log: ClassVar[list[tuple[str, str, float]]] = []

    async def process(self, ctx: PipeContext) -> PipeResult:
        runner = ctx.run.runner or ""
        SleepPipe.log.append((runner, "start", time.monotonic()))
        if self.params.block:
            time.sleep(self.params.block)  # noqa: ASYNC251 (blocking the loop is the point)
        try:
            await asyncio.sleep(self.params.seconds)
        except asyncio.CancelledError:
            if not self.params.ignore_cancel_for:
                raise
            await asyncio.sleep(self.params.ignore_cancel_for)
        SleepPipe.log.append((runner, "end", time.monotonic()))
        return PipeResult.success({"value": runner})


class EveryParams(ParamsModel):
    seconds: float


class WallEvery(TimeTrigger[EveryParams]):
    """Fires every ``seconds`` of POSIX time (at whole multiples)."""

    clock = "wall"

    def next_fire_after(self, after: float, start: float) -> float:
        step = self.params.seconds
        return (after // step + 1) * step


class HangParams(ParamsModel):
    open_for: float = 0.0
    close_for: float = 0.0
    mark: str | None = None
    """A file touched when open() begins (so a test knows it hangs there now)."""


class HangingService(Service[HangParams]):
    """A service whose open() and close() take as long as told (a helpdesk login that
    hangs, a model that loads for minutes)."""

    async def open(self) -> None:
        if self.params.mark:
            Path(self.params.mark).touch()  # noqa: ASYNC240 (a tiny local file, on purpose)
        await asyncio.sleep(self.params.open_for)

    async def close(self) -> None:
        await asyncio.sleep(self.params.close_for)
