"""Opening and closing the services of a config, in order and in reverse."""

from __future__ import annotations

from typing import Any

from open_ticket_ai.core.resources import close_shared
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import ComponentError
from open_ticket_ai.runtime.events import EventBus, ServiceCloseFailed

__all__ = ["ServicesOpen"]


class ServicesOpen:
    """Opens services in order; closes the opened ones in reverse, logging close failures."""

    def __init__(self, services: list[Service[Any]], bus: EventBus) -> None:
        self.services = services
        self.bus = bus
        self.opened: list[Service[Any]] = []

    async def __aenter__(self) -> None:
        for service in self.services:
            service.publish = self.bus.publish
            try:
                await service.open()
            except Exception as exc:
                await self.__aexit__(None, None, None)
                raise ComponentError(
                    f"service {service.id!r} failed to open: {type(exc).__name__}: {exc}"
                ) from exc
            self.opened.append(service)

    async def __aexit__(self, *exc_info: object) -> None:
        await close_shared()  # what runs shared (a pooled HTTP client), before the services
        while self.opened:
            service = self.opened.pop()
            try:
                await service.close()
            except Exception as exc:
                self.bus.publish(ServiceCloseFailed(service=service.id, error=exc))
