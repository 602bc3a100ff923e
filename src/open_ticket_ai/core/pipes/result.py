"""PipeResult: what a pipe reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PipeResult"]


@dataclass(frozen=True, slots=True)
class PipeResult:
    """The outcome of one pipe: succeeded, failed, or skipped, with a message and data.

    A run keeps each step's result under the step's id; ``pipe_result(id, key)`` in a template
    reads ``data[key]``. ``error`` holds the exception behind a failure, for logs.
    """

    succeeded: bool
    skipped: bool = False
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return not self.succeeded and not self.skipped

    @property
    def status(self) -> str:
        """``"succeeded"``, ``"failed"`` or ``"skipped"``."""
        if self.succeeded:
            return "succeeded"
        return "skipped" if self.skipped else "failed"

    @classmethod
    def success(cls, data: Mapping[str, Any] | None = None, message: str = "") -> PipeResult:
        return cls(succeeded=True, message=message, data=dict(data or {}))

    @classmethod
    def failure(
        cls,
        message: str,
        data: Mapping[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> PipeResult:
        return cls(succeeded=False, message=message, data=dict(data or {}), error=error)

    @classmethod
    def skip(cls, message: str = "", data: Mapping[str, Any] | None = None) -> PipeResult:
        return cls(succeeded=False, skipped=True, message=message, data=dict(data or {}))
