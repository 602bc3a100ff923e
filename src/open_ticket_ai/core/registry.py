"""Resolving ``use:`` to a component class.

Accepted spellings: ``module:Class``, ``module.Class``, a short name (``CompositePipe``) of a
built-in or of a plugin's component, and the module aliases older configs use
(``open_ticket_ai.base.interval_trigger:IntervalTrigger``).

The core knows no component by name. Short names come from entry points in the group
``open_ticket_ai.plugins``: the built-ins are the entry points of the distribution itself
(``ticketflow-orchestrator``, its ``pyproject.toml``), the rest come from installed plugins
and the modules a config lists under ``plugins:``. A ``Name = "module:Class"`` entry point makes
``Name`` a short name and imports ``module`` only when a config uses it; a ``name = "module"``
entry point imports the module when a :class:`Registry` is made and gives each public
component class it defines its class name. Entry points are read once per process
(:func:`reload_entry_points` forgets them). A built-in keeps its short name when a plugin
declares the same one; the clash is logged once, naming both distributions.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

from open_ticket_ai.core.component import Component
from open_ticket_ai.errors import ComponentError

__all__ = ["DISTRIBUTION", "ENTRY_POINT_GROUP", "Registry", "reload_entry_points"]

ENTRY_POINT_GROUP = "open_ticket_ai.plugins"
"""The entry-point group of components: the built-ins' and every plugin's."""

DISTRIBUTION = "ticketflow-orchestrator"
"""The distribution whose entry points are the built-ins."""

_BUILTIN_ORIGIN = "open_ticket_ai"

MODULE_ALIASES: dict[str, str] = {
    "open_ticket_ai.base.interval_trigger": "open_ticket_ai.base.triggers.interval_trigger",
    "open_ticket_ai.base.composite_pipe": "open_ticket_ai.base.pipes.composite_pipe",
    "open_ticket_ai.base.expression_pipe": "open_ticket_ai.base.pipes.expression_pipe",
    "open_ticket_ai.base.http_request_pipe": "open_ticket_ai.base.pipes.http_request_pipe",
}

_BASE = {
    name: name
    for name in (
        "CompositePipe",
        "ExpressionPipe",
        "FetchTicketsPipe",
        "UpdateTicketPipe",
        "AddNotePipe",
        "IntervalTrigger",
        "ClassificationPipe",
    )
}
UPSTREAM_PLUGINS: dict[str, dict[str, str]] = {
    "base": _BASE,
    "otai_base": _BASE,
    "otobo-znuny": {"OTOBOZnunyTicketSystemService": "OTOBOZnunyTicketSystemService"},
    "hf-local": {"HFClassificationService": "HFClassificationService"},
    "zammad": {"ZammadTicketSystemService": "ZammadTicketSystemService"},
}
"""Open Ticket AI's ``plugin:Class`` prefixes, and the components of each that are ours by
the same name and params."""
_TICKET_PIPES = ("FetchTicketsPipe", "UpdateTicketPipe", "AddNotePipe")
_TICKET_PIPE_MODULES = {
    "FetchTicketsPipe": "fetch_tickets_pipe",
    "UpdateTicketPipe": "update_ticket_pipe",
    "AddNotePipe": "add_note_pipe",
}


def _upstream_modules() -> dict[str, dict[str, str]]:
    modules: dict[str, dict[str, str]] = {
        "open_ticket_ai.base": _BASE,
        "open_ticket_ai.base.composite_pipe": {"CompositePipe": "CompositePipe"},
        "open_ticket_ai.base.expression_pipe": {"ExpressionPipe": "ExpressionPipe"},
        "open_ticket_ai.base.interval_trigger": {"IntervalTrigger": "IntervalTrigger"},
        "open_ticket_ai.base.pipes.classification_pipe": {
            "ClassificationPipe": "ClassificationPipe"
        },
        "open_ticket_ai.base.template_renderers.jinja_renderer": {"JinjaRenderer": ""},
        "otai_otobo_znuny": {"OTOBOZnunyTicketSystemService": "OTOBOZnunyTicketSystemService"},
        "otai_otobo_znuny.oto_znuny_ts_service": {
            "OTOBOZnunyTicketSystemService": "OTOBOZnunyTicketSystemService"
        },
        "otai_otobo_znuny.otobo_znuny_ticket_system_service": {
            "OTOBOZnunyTicketSystemService": "OTOBOZnunyTicketSystemService"
        },
        "otai_zammad": {"ZammadTicketSystemService": "ZammadTicketSystemService"},
        "otai_hf_local": {
            "HFLocalTextClassificationPipe": "ClassificationPipe",
            "HFClassificationService": "HFClassificationService",
        },
        "otai_hf_local.hf_local_text_classification_pipe": {
            "HFLocalTextClassificationPipe": "ClassificationPipe"
        },
    }
    for package in ("open_ticket_ai.base", "open_ticket_ai.base.pipes"):
        modules[f"{package}.ticket_system_pipes"] = {name: name for name in _TICKET_PIPES}
        for name, module in _TICKET_PIPE_MODULES.items():
            modules[f"{package}.ticket_system_pipes.{module}"] = {name: name}
    return modules


UPSTREAM_MODULES: dict[str, dict[str, str]] = _upstream_modules()
"""Open Ticket AI's module paths (the 1.0 format's ``use: "module:Class"``) and, per class,
the component that is ours (``""``: none is needed here, the config translator drops it).
A class written with a 1.0 path that is not a module of this package resolves through this
table; ``HFLocalTextClassificationPipe`` also needs its params translated (the config
translator does that)."""
UPSTREAM_PACKAGES = ("open_ticket_ai.", "otai_")
"""Module names that are Open Ticket AI's: one not in :data:`UPSTREAM_MODULES` is an error
listing those that are."""


def upstream_component(spec: str) -> str | None:
    """Our short name for an Open Ticket AI ``use:`` (``base:FetchTicketsPipe``,
    ``open_ticket_ai.base.pipes.ticket_system_pipes.fetch_tickets_pipe:FetchTicketsPipe``),
    ``""`` for one that is not needed here (``JinjaRenderer``), None when ``spec`` is not
    one of them (ours, a plugin's, or unknown)."""
    module, colon, name = spec.strip().partition(":")
    if not colon:
        return None
    if module in UPSTREAM_PLUGINS:
        if name in _IGNORED:
            return ""
        return UPSTREAM_PLUGINS[module].get(name)
    return UPSTREAM_MODULES.get(module, {}).get(name)


_IGNORED = frozenset({"JinjaRenderer"})

UPSTREAM_EQUIVALENTS = {
    "JinjaRenderer": "nothing: templates are built in; leave the service out",
    "HFLocalTextClassificationPipe": "ClassificationPipe with model_name (its 'model'), text "
    "(its 'prompt') and classification_service, the id of an HFClassificationService; an "
    "Open Ticket AI 1.0 config is translated so",
    "SimpleSequentialOrchestrator": "the orchestrator itself: list runners under "
    "orchestrator.runners",
    "SimpleSequentialRunner": "a runner under orchestrator.runners (its 'on' and 'run')",
}
"""Open Ticket AI components that exist here under another name or shape: what to write."""

_log = logging.getLogger("open_ticket_ai.registry")

C = TypeVar("C", bound=Component[Any])


@dataclass(frozen=True, slots=True)
class _Declared:
    """One entry point of the group as its distribution's metadata declares it."""

    name: str
    value: str
    distribution: str  # "name version", for messages
    builtin: bool

    @property
    def module(self) -> str:
        return self.value.partition("[")[0].partition(":")[0].strip()

    @property
    def attr(self) -> str | None:
        """``Class`` of ``module:Class``; None for an entry point naming a module."""
        _, colon, attr = self.value.partition("[")[0].partition(":")
        return attr.strip() if colon else None


@dataclass(frozen=True, slots=True)
class _Found:
    builtins: tuple[_Declared, ...]
    plugins: tuple[_Declared, ...]
    problem: str | None = None


@functools.cache
def _entry_points() -> _Found:
    """The group's entry points, read from the metadata once per process (nothing imported)."""
    try:
        own = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _Found(
            (),
            (),
            f"the distribution {DISTRIBUTION!r} is not installed: its built-in components "
            f"are entry points ({ENTRY_POINT_GROUP!r}) in its package metadata, and no "
            "metadata for it is on sys.path; install the package (from a source checkout: "
            "pip install -e .)",
        )
    own_label = _label(own)
    builtins = tuple(
        _Declared(point.name, point.value, own_label, builtin=True)
        for point in own.entry_points.select(group=ENTRY_POINT_GROUP)
    )
    if not builtins:
        return _Found(
            (),
            (),
            f"the installed metadata of {own_label} declares no built-in component (no "
            f"entry points in {ENTRY_POINT_GROUP!r}): it is older than the pyproject.toml "
            "declaring them; reinstall the package (from a source checkout: pip install -e .)",
        )
    own_key = _normalise(own.name)
    plugins = [
        _Declared(point.name, point.value, _label(point.dist), builtin=False)
        for point in metadata.entry_points(group=ENTRY_POINT_GROUP)
        if point.dist is None or _normalise(point.dist.name) != own_key
    ]
    plugins.sort(key=lambda point: (point.distribution, point.name, point.value))
    return _Found(builtins, tuple(plugins))


_reported: set[str] = set()


def reload_entry_points() -> None:
    """Forget the entry points read so far: the next :class:`Registry` reads them again.

    For a process that installs a plugin while it runs, and for tests.
    """
    _entry_points.cache_clear()
    _reported.clear()


def _label(dist: metadata.Distribution | None) -> str:
    if dist is None:
        return "an unknown distribution"
    return f"{dist.name} {dist.version}"


def _normalise(name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def _report_once(message: str) -> None:
    if message not in _reported:
        _reported.add(message)
        _log.warning("%s", message)


class Registry:
    """Short names and plugins; resolves a ``use:`` string to a class of the wanted kind.

    The built-ins are always there; ``load_entry_points=False`` leaves installed plugins out.
    Raises ComponentError when the package's own metadata (and so every built-in) is missing.
    """

    def __init__(self, *, load_entry_points: bool = True) -> None:
        found = _entry_points()
        if found.problem is not None:
            raise ComponentError(found.problem)
        self._short: dict[str, str | type[Component[Any]]] = {}
        self._origin: dict[str, str] = {}
        self._declared: dict[str, _Declared] = {}  # the entry point a short name comes from
        self._ambiguous: dict[str, list[str]] = {}  # names two plugins declare differently
        self._implied: set[str] = set()
        self._resolved: dict[str, type[Component[Any]]] = {}
        self.search_path: tuple[str, ...] = ()
        """The directories a config adds to the import path for its plugins (for messages)."""
        for point in found.builtins:
            self._offer(point.name, point.value, point)
        if not load_entry_points:
            return
        for point in found.plugins:
            if point.attr is not None:
                self._offer(point.name, point.value, point)
        for point in found.plugins:
            if point.attr is None:
                for cls in _components(self._load_module(point)):
                    self._offer(cls.__name__, cls, point)
        for point in found.plugins:
            # Compatibility: ``greet = "pkg:GreetPipe"`` used to be known as ``GreetPipe``
            # only; that name stays, unless something declares it outright.
            implied = (point.attr or "").rpartition(".")[2]
            if implied and implied != point.name:
                if implied not in self._short:
                    self._offer(implied, point.value, point)
                    self._implied.add(implied)
                elif implied in self._implied:
                    self._offer(implied, point.value, point)

    @property
    def short_names(self) -> list[str]:
        return sorted(self._short)

    def add(self, cls: type[Component[Any]], *, name: str | None = None, origin: str = "") -> None:
        """Make ``cls`` reachable by its short name."""
        name = name or cls.__name__
        existing = self._short.get(name)
        if (
            existing is not None
            and name not in self._implied
            and name not in self._ambiguous
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
        self._declared.pop(name, None)
        self._ambiguous.pop(name, None)
        self._implied.discard(name)

    def add_module(self, module: ModuleType | str) -> int:
        """Register every public component class a plugin module defines; return the count."""
        if isinstance(module, str):
            module = self._import(module)
        count = 0
        for cls in _components(module):
            self.add(cls, origin=module.__name__)
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
        if module_name in UPSTREAM_PLUGINS:
            return self._upstream(module_name, attr, spec)
        if module_name in UPSTREAM_MODULES:
            ours = UPSTREAM_MODULES[module_name].get(attr)
            if ours:
                return self._short_name(ours)
            if attr in UPSTREAM_EQUIVALENTS:
                raise ComponentError(
                    f"{spec!r} is Open Ticket AI's; here: {UPSTREAM_EQUIVALENTS[attr]}"
                )
            if not module_name.startswith(_BUILTIN_ORIGIN + ".base"):
                raise self._unknown_upstream(spec)
        if "-" in module_name:
            known = ", ".join(f"{prefix}:" for prefix in UPSTREAM_PLUGINS)
            raise ComponentError(
                f"{spec!r}: {module_name!r} is no module (a module name has no '-'); the "
                f"plugin prefixes of Open Ticket AI configs are {known}; else write "
                "'module:Class' or a short name like 'CompositePipe'"
            )
        if "" in module_name.split(".") or "" in attr.split("."):
            raise ComponentError(
                f"{spec!r} is not a component name: write 'module:Class', 'module.Class' or a "
                "short name like 'CompositePipe'"
            )
        target = MODULE_ALIASES.get(module_name, module_name)
        if target.startswith(UPSTREAM_PACKAGES) and not _findable(target):
            raise self._unknown_upstream(spec)
        module = self._import(target)
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

    @staticmethod
    def _unknown_upstream(spec: str) -> ComponentError:
        known = ", ".join(
            f"{module}:{name}"
            for module, classes in UPSTREAM_MODULES.items()
            for name, ours in classes.items()
            if ours
        )
        return ComponentError(
            f"{spec!r}: no such component of Open Ticket AI's here; the module paths known "
            f"are {known}; or write a short name like 'FetchTicketsPipe'"
        )

    def _upstream(self, prefix: str, name: str, spec: str) -> type[Component[Any]]:
        """``base:FetchTicketsPipe`` and the other ``plugin:Class`` names of Open Ticket AI."""
        ours = UPSTREAM_PLUGINS[prefix].get(name)
        if ours is not None:
            return self._short_name(ours)
        if name in UPSTREAM_EQUIVALENTS:
            raise ComponentError(
                f"{spec!r} is Open Ticket AI's; here: {UPSTREAM_EQUIVALENTS[name]}"
            )
        offered = ", ".join(f"{prefix}:{n}" for n in UPSTREAM_PLUGINS[prefix]) or "none"
        raise ComponentError(f"{spec!r}: no component {name!r} under {prefix}: ({offered})")

    def _short_name(self, name: str) -> type[Component[Any]]:
        target = self._short.get(name)
        if target is None and name in UPSTREAM_EQUIVALENTS:
            raise ComponentError(
                f"{name!r} is Open Ticket AI's; here: {UPSTREAM_EQUIVALENTS[name]}"
            )
        if target is None:
            hint = _hint(name, list(self._short)) or (
                f" (known: {', '.join(sorted(self._short))}; or write 'module:Class')"
            )
            raise ComponentError(f"unknown component {name!r}{hint}")
        if name in self._ambiguous:
            raise ComponentError(
                f"short name {name!r} is declared by more than one plugin: "
                f"{' and '.join(self._ambiguous[name])}; write the one you mean as 'module:Class'"
            )
        if not isinstance(target, str):
            return target
        point = self._declared.get(name)
        if point is None or point.builtin:
            return self._lookup(target)
        try:
            return self._lookup(target)
        except ComponentError as exc:
            raise ComponentError(
                f"plugin entry point {point.name!r} ({point.value}) of {point.distribution} "
                f"failed to load: {exc}"
            ) from exc

    def _offer(self, name: str, target: str | type[Component[Any]], point: _Declared) -> None:
        """Give ``name`` to ``target`` from an entry point, unless it is taken (see module doc)."""
        existing = self._short.get(name)
        if existing is None:
            self._short[name] = target
            self._origin[name] = (
                _BUILTIN_ORIGIN if point.builtin else f"{point.value} from {point.distribution}"
            )
            self._declared[name] = point
            return
        if self._qualname(existing) == self._qualname(target):
            return
        holder = self._declared[name]
        if holder.builtin:
            _report_once(
                f"plugin distribution {point.distribution} declares the short name {name!r} "
                f"({self._qualname(target)}), which is a built-in of {holder.distribution} "
                f"({self._qualname(existing)}); {name!r} keeps meaning the built-in: write "
                f"'{self._qualname(target)}' to use the plugin's"
            )
            return
        claims = self._ambiguous.setdefault(
            name, [f"{self._qualname(existing)} from {holder.distribution}"]
        )
        claims.append(f"{self._qualname(target)} from {point.distribution}")

    @staticmethod
    def _load_module(point: _Declared) -> ModuleType:
        try:
            return importlib.import_module(point.module)
        except Exception as exc:
            raise ComponentError(
                f"plugin entry point {point.name!r} ({point.value}) of {point.distribution} "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc

    def _import(self, module_name: str) -> ModuleType:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name == module_name.split(".")[0]:
                where = ", ".join(repr(d) for d in self.search_path) or "none"
                raise ComponentError(
                    f"no module {module_name!r}: it is looked for beside the config and in "
                    f"plugin_paths ({where}), then among installed packages; put "
                    f"{module_name.split('.')[0]}.py there or list its directory under "
                    "plugin_paths"
                ) from None
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


def _findable(module_name: str) -> bool:
    """Whether ``module_name`` can be imported (its parents are imported to find out)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def _defined_in(cls: type[Any], module_name: str) -> bool:
    """True when ``cls`` comes from the module or one of its submodules (not a namesake)."""
    return cls.__module__ == module_name or cls.__module__.startswith(module_name + ".")


def _components(module: ModuleType) -> Iterator[type[Component[Any]]]:
    """The public, concrete component classes ``module`` defines (not those it imports)."""
    for name, value in vars(module).items():
        if (
            not name.startswith("_")
            and inspect.isclass(value)
            and issubclass(value, Component)
            and _defined_in(value, module.__name__)
            and not inspect.isabstract(value)
        ):
            yield value


def _hint(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
