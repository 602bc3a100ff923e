"""The Trigger base classes: the plugin API for deciding when runners fire."""

from __future__ import annotations

from typing import ClassVar

from open_ticket_ai.core.component import Component, ParamsT

__all__ = ["TimeTrigger", "Trigger"]


class Trigger(Component[ParamsT]):
    """Decides when the runners that list it fire. One instance serves every runner naming
    its id. Subclass :class:`TimeTrigger` for schedules."""

    kind: ClassVar[str] = "trigger"

    def __init__(self, params: ParamsT, *, id: str = "") -> None:
        super().__init__(params)
        self.id = id


class TimeTrigger(Trigger[ParamsT]):
    """A trigger whose fire times are pure arithmetic on a clock.

    ``clock`` is ``"monotonic"`` (times are ``time.monotonic()`` seconds; wall-clock jumps move
    nothing) or ``"wall"`` (times are POSIX timestamps). Both methods are pure: given the same
    arguments they return the same answer, and are tested with fixed numbers.
    """

    clock: ClassVar[str] = "monotonic"

    def first_fire(self, start: float) -> float | None:
        """The first fire time for a schedule armed at ``start``; None for never."""
        return self.next_fire_after(start, start)

    def next_fire_after(self, after: float, start: float) -> float | None:
        """The first fire time strictly after ``after`` for a schedule armed at ``start``."""
        raise NotImplementedError
