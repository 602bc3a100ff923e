"""The Pipe base class: the plugin API for one step of a pipeline."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

from open_ticket_ai.core.component import Component, ParamsT
from open_ticket_ai.core.pipes.result import PipeResult

if TYPE_CHECKING:
    from open_ticket_ai.core.pipes.run import PipeContext

__all__ = ["Pipe"]


class Pipe(Component[ParamsT]):
    """One step of a pipeline.

    Subclass it, declare the params as a pydantic model (``class MyPipe(Pipe[MyParams])``) and
    implement ``process``. An ``async def process`` runs on the event loop; a plain
    ``def process`` runs in a worker thread so it never blocks the loop. A pipe is built fresh
    for every execution from its rendered, validated params (``self.params``).
    """

    kind: ClassVar[str] = "pipe"
    accepts_steps: ClassVar[bool] = False
    """True for pipes that run nested ``steps`` (the composite)."""
    is_async: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.is_async = inspect.iscoroutinefunction(cls.process)

    def __init__(self, params: ParamsT, *, id: str = "") -> None:
        super().__init__(params)
        self.id = id

    def process(self, ctx: PipeContext) -> PipeResult | Awaitable[PipeResult]:
        """Do the work and report it; raising fails the pipe with the exception's message."""
        raise NotImplementedError(f"{type(self).__name__} does not implement process()")
