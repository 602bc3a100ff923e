"""The one exception tree of open-ticket-ai.

::

    OpenTicketAIError
    ├── ConfigError          the config cannot be loaded; carries every Problem found
    ├── ComponentError       a `use:` cannot be resolved or a component cannot be built
    ├── TemplateError        a template failed to compile or render (names the config path)
    ├── PipeError            a pipe failed in a way it could not report as a PipeResult
    └── TicketSystemError    a helpdesk refused or failed a request (names system and call)
        ├── TicketNotFoundError
        └── AnswerLostError  a write was sent and its answer lost: it may have landed

Every message names where it happened: the config file, line and column when known, and the
config path (``orchestrator.runners[1].run.steps[0].params.url``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "AnswerLostError",
    "ComponentError",
    "ConfigError",
    "OpenTicketAIError",
    "PipeError",
    "Problem",
    "TemplateError",
    "TicketNotFoundError",
    "TicketSystemError",
]


class OpenTicketAIError(Exception):
    """Root of every error open-ticket-ai raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config, with where it is."""

    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
        head = " ".join(part for part in (where, self.path) if part)
        return f"{head}: {self.message}" if head else self.message


class ConfigError(OpenTicketAIError):
    """The config is invalid; :attr:`problems` lists every problem found, in file order."""

    def __init__(self, problems: Iterable[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems: Sequence[Problem] = sorted(
            problems, key=lambda p: (p.file or "", p.line or 0, p.column or 0, p.path)
        )
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in config"
        super().__init__("\n".join([header, *(f"  {p}" for p in self.problems)]))


class ComponentError(OpenTicketAIError):
    """A component named by `use:` cannot be found, is of the wrong kind, or failed to build."""


class TemplateError(OpenTicketAIError):
    """A template failed to compile or render; the message starts with its config path."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        self.reason = message
        self.loc: tuple[str | int, ...] = ()
        """Where in the config the template stands, when known."""
        super().__init__(f"{path}: {message}" if path else message)


class PipeError(OpenTicketAIError):
    """A pipe failed; raised inside a pipe to fail it with a clear message and no traceback."""


class TicketSystemError(OpenTicketAIError):
    """A helpdesk refused or failed a request; the message names the system, the call and
    the system's answer. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AnswerLostError(TicketSystemError):
    """A write was sent but its answer was lost (a 5xx, a connection closed or cut, a read
    timeout): the helpdesk may have applied it. Never retried blind: the adapter first checks
    whether the write landed."""


class TicketNotFoundError(TicketSystemError):
    """The ticket does not exist (or is not visible to the configured account)."""
