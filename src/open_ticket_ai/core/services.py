"""The Service base class: shared components with a lifecycle."""

from __future__ import annotations

from typing import Annotated, ClassVar

from open_ticket_ai.core.component import Component, ParamsT

__all__ = ["Service", "ServiceId", "ServiceRef"]


class Service(Component[ParamsT]):
    """A singleton shared by every pipe that names its ``id`` (a ticket system, a classifier).

    The orchestrator calls :meth:`open` once before anything runs and :meth:`close` once at
    shutdown, after the last run has ended.
    """

    kind: ClassVar[str] = "service"

    def __init__(self, params: ParamsT, *, id: str = "") -> None:
        super().__init__(params)
        self.id = id

    async def open(self) -> None:
        """Connect, load models, warm caches. The default does nothing."""

    async def close(self) -> None:
        """Release what :meth:`open` took. The default does nothing."""


class ServiceRef:
    """Marks a params field as naming a service: ``ticket_system: ServiceId``. The config is
    checked at load time for a service of that id."""


ServiceId = Annotated[str, ServiceRef()]
"""A params field type: the id of a service declared under ``services:``."""
