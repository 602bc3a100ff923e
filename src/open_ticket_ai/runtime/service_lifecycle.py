"""Opening and closing the services of a config, in order and in reverse.

A stop request while a service opens (a model loading, a helpdesk login that hangs) ends the
opening: the service is abandoned and nothing runs. A service whose close takes longer than
its time is abandoned too. Either way the process stops in bounded time, and says which
service it left behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from open_ticket_ai.core.resources import close_shared
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import ComponentError
from open_ticket_ai.runtime.events import EventBus, ServiceAbandoned, ServiceCloseFailed

__all__ = ["ServicesOpen", "StoppedWhileOpening"]


class StoppedWhileOpening(Exception):
    """The stop request came while services were opening: nothing ran."""


class ServicesOpen:
    """Opens services in order; closes the opened ones in reverse, logging close failures.

    With ``stop``, an opening still going when it is set is cancelled and abandoned
    (StoppedWhileOpening). Each close gets ``close_timeout`` seconds."""

    def __init__(
        self,
        services: list[Service[Any]],
        bus: EventBus,
        *,
        stop: asyncio.Event | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        self.services = services
        self.bus = bus
        self.stop = stop
        self.close_timeout = close_timeout
        self.opened: list[Service[Any]] = []

    async def __aenter__(self) -> None:
        for service in self.services:
            service.publish = self.bus.publish
            try:
                await self._open(service)
            except StoppedWhileOpening:
                await self.__aexit__(None, None, None)
                raise
            except Exception as exc:
                await self.__aexit__(None, None, None)
                raise ComponentError(
                    f"service {service.id!r} failed to open: {type(exc).__name__}: {exc}"
                ) from exc
            self.opened.append(service)

    async def _open(self, service: Service[Any]) -> None:
        if self.stop is None:
            await service.open()
            return
        if self.stop.is_set():
            raise StoppedWhileOpening
        started = time.monotonic()
        opening = asyncio.ensure_future(service.open())
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if opening.done():
            opening.result()  # raises what the opening raised
            return
        opening.cancel()
        await asyncio.wait({opening}, timeout=1.0)  # a thread in it cannot be stopped
        opening.add_done_callback(_quiet)
        self.bus.publish(
            ServiceAbandoned(service=service.id, stage="opening", waited=time.monotonic() - started)
        )
        raise StoppedWhileOpening

    async def __aexit__(self, *exc_info: object) -> None:
        await close_shared()  # what runs shared (a pooled HTTP client), before the services
        while self.opened:
            service = self.opened.pop()
            started = time.monotonic()
            closing = asyncio.ensure_future(service.close())
            done, _ = await asyncio.wait({closing}, timeout=self.close_timeout)
            if not done:
                closing.cancel()
                closing.add_done_callback(_quiet)
                self.bus.publish(
                    ServiceAbandoned(
                        service=service.id, stage="closing", waited=time.monotonic() - started
                    )
                )
                continue
            exc = closing.exception()
            if isinstance(exc, Exception):
                self.bus.publish(ServiceCloseFailed(service=service.id, error=exc))


def _quiet(task: asyncio.Future[Any]) -> None:
    """Consume the outcome of an abandoned open or close (nobody awaits it any more)."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
