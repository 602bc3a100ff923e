"""The Service base class: shared components with a lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from open_ticket_ai.core.component import Component, ParamsT

__all__ = ["Service", "ServiceId", "ServiceOrPath", "ServiceRef"]


class Service(Component[ParamsT]):
    """A singleton shared by every pipe that names its ``id`` (a ticket system, a classifier).

    The orchestrator calls :meth:`open` once before anything runs and :meth:`close` once at
    shutdown, after the last run has ended.
    """

    kind: ClassVar[str] = "service"

    def __init__(self, params: ParamsT, *, id: str = "") -> None:
        super().__init__(params)
        self.id = id
        self.publish: Callable[[Any], None] | None = None
        """Publishes an event on the orchestrator's bus (set by the orchestrator before
        :meth:`open`; None outside one): how a service reports what it does, such as the
        requests a ticket system sends, to logs and metrics."""

    async def open(self) -> None:
        """Connect, load models, warm caches. The default does nothing."""

    async def close(self) -> None:
        """Release what :meth:`open` took. The default does nothing."""


class ServiceRef:
    """Marks a params field as naming a service: ``ticket_system: ServiceId``. The config is
    checked at load time for a service of that id. With ``or_path``, the field may name a
    file instead (a model file): a value that looks like a path is checked to exist (a
    warning when it does not: it may be made before the run), any other must be a service."""

    def __init__(self, *, or_path: bool = False) -> None:
        self.or_path = or_path


ServiceId = Annotated[str, ServiceRef()]
"""A params field type: the id of a service declared under ``services:``."""
ServiceOrPath = Annotated[str, ServiceRef(or_path=True)]
"""A params field type: the id of a service, or the path of a file (``model:``)."""
