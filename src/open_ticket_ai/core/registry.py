"""Resolving ``use:`` to a component class.

Accepted spellings: ``module:Class``, ``module.Class``, a short name (``CompositePipe``) of a
built-in or of a plugin's component, and the module aliases older configs use
(``open_ticket_ai.base.interval_trigger:IntervalTrigger``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, TypeVar

from open_ticket_ai.core.component import Component
from open_ticket_ai.errors import ComponentError

__all__ = ["ENTRY_POINT_GROUP", "Registry"]

ENTRY_POINT_GROUP = "open_ticket_ai.plugins"

BUILTINS: dict[str, str] = {
    "CompositePipe": "open_ticket_ai.base.pipes.composite_pipe:CompositePipe",
    "ExpressionPipe": "open_ticket_ai.base.pipes.expression_pipe:ExpressionPipe",
    "HttpRequestPipe": "open_ticket_ai.base.pipes.http_request_pipe:HttpRequestPipe",
    "IntervalTrigger": "open_ticket_ai.base.triggers.interval_trigger:IntervalTrigger",
    "WebhookTrigger": "open_ticket_ai.base.triggers.webhook_trigger:WebhookTrigger",
    "RunnerFinishedTrigger": (
        "open_ticket_ai.base.triggers.runner_finished_trigger:RunnerFinishedTrigger"
    ),
    "CronTrigger": "open_ticket_ai.base.triggers.cron_trigger:CronTrigger",
    "DateTrigger": "open_ticket_ai.base.triggers.date_trigger:DateTrigger",
    "FetchTicketsPipe": "open_ticket_ai.tickets.pipes:FetchTicketsPipe",
    "UpdateTicketPipe": "open_ticket_ai.tickets.pipes:UpdateTicketPipe",
    "AddNotePipe": "open_ticket_ai.tickets.pipes:AddNotePipe",
    "CreateTicketPipe": "open_ticket_ai.tickets.pipes:CreateTicketPipe",
    "SqliteTicketSystem": "open_ticket_ai.tickets.adapters.sqlite:SqliteTicketSystem",
    "RequestTrackerTicketSystem": "open_ticket_ai.tickets.adapters.rt:RequestTrackerTicketSystem",
    "ZnunyTicketSystem": "open_ticket_ai.tickets.adapters.znuny:ZnunyTicketSystem",
    "OtoboTicketSystem": "open_ticket_ai.tickets.adapters.znuny:ZnunyTicketSystem",
    "ZammadTicketSystem": "open_ticket_ai.tickets.adapters.zammad:ZammadTicketSystem",
    "ClassifyPipe": "open_ticket_ai.classification.classify_pipe:ClassifyPipe",
    "ClassifierService": "open_ticket_ai.classification.service:ClassifierService",
    "SampleTicketPipe": "open_ticket_ai.demo.pipes:SampleTicketPipe",
}

MODULE_ALIASES: dict[str, str] = {
    "open_ticket_ai.base.interval_trigger": "open_ticket_ai.base.triggers.interval_trigger",
    "open_ticket_ai.base.composite_pipe": "open_ticket_ai.base.pipes.composite_pipe",
    "open_ticket_ai.base.expression_pipe": "open_ticket_ai.base.pipes.expression_pipe",
    "open_ticket_ai.base.http_request_pipe": "open_ticket_ai.base.pipes.http_request_pipe",
}

C = TypeVar("C", bound=Component[Any])


class Registry:
    """Short names and plugins; resolves a ``use:`` string to a class of the wanted kind."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._short: dict[str, str | type[Component[Any]]] = dict(BUILTINS)
        self._origin: dict[str, str] = dict.fromkeys(BUILTINS, "open_ticket_ai")
        self._resolved: dict[str, type[Component[Any]]] = {}
        if load_entry_points:
            for point in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    loaded = point.load()
                except Exception as exc:
                    raise ComponentError(
                        f"plugin entry point {point.name!r} ({point.value}) failed to load: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if isinstance(loaded, ModuleType):
                    self.add_module(loaded)
                elif isinstance(loaded, type) and issubclass(loaded, Component):
                    self.add(loaded, origin=point.value)

    @property
    def short_names(self) -> list[str]:
        return sorted(self._short)

    def add(self, cls: type[Component[Any]], *, name: str | None = None, origin: str = "") -> None:
        """Make ``cls`` reachable by its short name."""
        name = name or cls.__name__
        existing = self._short.get(name)
        if (
            existing is not None
            and existing is not cls
            and self._qualname(existing) != (f"{cls.__module__}:{cls.__qualname__}")
        ):
            raise ComponentError(
                f"short name {name!r} of {origin or cls.__module__} is taken by "
                f"{self._origin.get(name, '?')}; refer to it as "
                f"'{cls.__module__}:{cls.__qualname__}'"
            )
        self._short[name] = cls
        self._origin[name] = origin or cls.__module__

    def add_module(self, module: ModuleType | str) -> int:
        """Register every public component class a plugin module defines; return the count."""
        if isinstance(module, str):
            module = self._import(module)
        count = 0
        for name, value in vars(module).items():
            if (
                not name.startswith("_")
                and inspect.isclass(value)
                and issubclass(value, Component)
                and _defined_in(value, module.__name__)
                and not inspect.isabstract(value)
            ):
                self.add(value, origin=module.__name__)
                count += 1
        return count

    def resolve(self, spec: str, kind: type[C]) -> type[C]:
        """The class ``spec`` names; ComponentError says why when there is none of ``kind``."""
        cls = self._resolved.get(spec)
        if cls is None:
            cls = self._lookup(spec)
            self._resolved[spec] = cls
        if not issubclass(cls, kind):
            raise ComponentError(
                f"{spec!r} is a {getattr(cls, 'kind', type(cls).__name__)}, not a "
                f"{getattr(kind, 'kind', kind.__name__)}"
            )
        return cls

    def _lookup(self, spec: str) -> type[Component[Any]]:
        spec = spec.strip()
        if ":" in spec:
            module_name, _, attr = spec.partition(":")
        elif "." in spec:
            module_name, _, attr = spec.rpartition(".")
        else:
            return self._short_name(spec)
        if "" in module_name.split(".") or "" in attr.split("."):
            raise ComponentError(
                f"{spec!r} is not a component name: write 'module:Class', 'module.Class' or a "
                "short name like 'CompositePipe'"
            )
        module = self._import(MODULE_ALIASES.get(module_name, module_name))
        value: Any = module
        for part in attr.split("."):
            if not hasattr(value, part):
                names = [n for n in dir(module) if not n.startswith("_")]
                raise ComponentError(f"module {module_name!r} has no {attr!r}{_hint(part, names)}")
            value = getattr(value, part)
        if not (inspect.isclass(value) and issubclass(value, Component)):
            raise ComponentError(
                f"{spec!r} is not a component class (a Pipe, Trigger or Service subclass)"
            )
        return value

    def _short_name(self, name: str) -> type[Component[Any]]:
        target = self._short.get(name)
        if target is None:
            hint = _hint(name, list(self._short)) or (
                f" (known: {', '.join(sorted(self._short))}; or write 'module:Class')"
            )
            raise ComponentError(f"unknown component {name!r}{hint}")
        if isinstance(target, str):
            return self._lookup(target)
        return target

    @staticmethod
    def _import(module_name: str) -> ModuleType:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ComponentError(f"cannot import module {module_name!r}: {exc}") from None
        except Exception as exc:
            raise ComponentError(
                f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _qualname(target: str | type[Any]) -> str:
        if isinstance(target, str):
            return target
        return f"{target.__module__}:{target.__qualname__}"


def _defined_in(cls: type[Any], module_name: str) -> bool:
    """True when ``cls`` comes from the module or one of its submodules (not a namesake)."""
    return cls.__module__ == module_name or cls.__module__.startswith(module_name + ".")


def _hint(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
