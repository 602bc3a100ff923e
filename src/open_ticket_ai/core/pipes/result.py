"""PipeResult: what a pipe reports, and PipeStatus, its outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["PipeResult", "PipeStatus"]


class PipeStatus(StrEnum):
    """A pipe result's outcome. A ``StrEnum``: it compares equal to its value
    (``"succeeded"``), so templates and configs may use the plain words."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class PipeResult:
    """The outcome of one pipe: succeeded, failed, or skipped, with a message and data.

    A run keeps each step's result under the step's id; ``pipe_result(id, key)`` in a template
    reads ``data[key]``. ``error`` holds the exception behind a failure, for logs.
    """

    status: PipeStatus
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.status is PipeStatus.SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.status is PipeStatus.FAILED

    @property
    def skipped(self) -> bool:
        return self.status is PipeStatus.SKIPPED

    @classmethod
    def success(cls, data: Mapping[str, Any] | None = None, message: str = "") -> PipeResult:
        return cls(PipeStatus.SUCCEEDED, message, dict(data or {}))

    @classmethod
    def failure(
        cls,
        message: str,
        data: Mapping[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> PipeResult:
        return cls(PipeStatus.FAILED, message, dict(data or {}), error)

    @classmethod
    def skip(cls, message: str = "", data: Mapping[str, Any] | None = None) -> PipeResult:
        return cls(PipeStatus.SKIPPED, message, dict(data or {}))


def _fast_init() -> None:
    """Give :class:`PipeResult` an ``__init__`` that sets each slot through its descriptor:
    a frozen dataclass's own goes through ``object.__setattr__`` once per field, and a
    result is made for every step of every run (this one takes a quarter of the time). The
    class stays the same frozen dataclass: fields, defaults, and refusal to change."""
    slots: dict[str, Any] = dict(vars(PipeResult))
    set_status = slots["status"].__set__
    set_message = slots["message"].__set__
    set_data = slots["data"].__set__
    set_error = slots["error"].__set__

    def __init__(
        self: PipeResult,
        status: PipeStatus,
        message: str = "",
        data: Mapping[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        set_status(self, status)
        set_message(self, message)
        set_data(self, {} if data is None else data)
        set_error(self, error)

    __init__.__qualname__ = "PipeResult.__init__"
    PipeResult.__init__ = __init__  # type: ignore[method-assign]


_fast_init()
