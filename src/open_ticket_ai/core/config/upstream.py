"""Reading configs written in Open Ticket AI's 1.1+ format, as they are.

That format wraps everything in ``open_ticket_ai:`` (or ``otai:``, ``cfg:``) with an
``api_version``, keeps ``services`` as a mapping from id to ``{use, params, injects}``, writes
the orchestrator as a pipe (``base:SimpleSequentialOrchestrator`` whose ``params.steps`` are
``base:SimpleSequentialRunner``s with ``params: {on, run}``), puts a CompositePipe's steps
under ``params.steps`` and hands services to pipes by ``injects: {param: service_id}``.

:func:`translate` rewrites such a document, in place, into this project's own form before
anything is validated, and moves the positions of the source map along, so that every later
check and every error location (file:line:column of the original text) applies unchanged.
The runtime knows nothing of it. What has no meaning here is dropped with a notice; each
translated spot is remembered (:attr:`Translation.marks`) for ``otai migrate``'s comments.
The pieces both of Open Ticket AI's formats share (names, ``injects``, logging) are here too;
the 1.0 format is :mod:`open_ticket_ai.core.config.upstream_v10`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from open_ticket_ai.core.config.yaml_source import ConfigPath, SourceMap, format_path
from open_ticket_ai.core.registry import upstream_component

__all__ = [
    "API_VERSION",
    "MIGRATE_HINT",
    "ROOT_ALIASES",
    "Translation",
    "component",
    "is_upstream",
    "logging_of",
    "move",
    "translate",
]

API_VERSION = "1.1.0"
"""The Open Ticket AI configuration API this project reads."""

ROOT_ALIASES = ("open_ticket_ai", "otai", "cfg")
_SLEEPS = ("orchestrator_sleep", "exception_sleep")
MIGRATE_HINT = "`otai migrate CONFIG` writes it in this project's format"


@dataclass
class Translation:
    """What reading an Open Ticket AI config did: notices (INFO), problems (errors), and
    the spots it changed (path in the translated document -> what was written there)."""

    format: str = ""
    notices: list[str] = field(default_factory=list)
    problems: list[tuple[str, ConfigPath]] = field(default_factory=list)
    marks: dict[ConfigPath, str] = field(default_factory=dict)

    def mark(self, path: ConfigPath, text: str) -> None:
        """Remember that ``path`` was translated (``text`` says from what)."""
        self.marks[path] = f"{self.marks[path]}; {text}" if path in self.marks else text


def is_upstream(data: Any) -> bool:
    """Whether ``data`` (a parsed YAML document) is in Open Ticket AI's 1.1+ format."""
    if not isinstance(data, dict) or len(data) != 1:
        return False
    root = next(iter(data))
    inner = data[root]
    if root not in ROOT_ALIASES or not isinstance(inner, dict):
        return False
    orchestrator = inner.get("orchestrator")
    return (
        "api_version" in inner
        or isinstance(inner.get("services"), dict)
        or (isinstance(orchestrator, dict) and "use" in orchestrator)
        or ("infrastructure" in inner and not isinstance(inner.get("services"), list))
    )


def translate(data: dict[str, Any], source: SourceMap) -> Translation:
    """Rewrite a 1.1+ document (see :func:`is_upstream`) into this project's wrapped form,
    in place; positions of the source map move with the values."""
    done = Translation(format="Open Ticket AI 1.1+")
    root = next(iter(data))
    inner: dict[str, Any] = data.pop(root)
    data["open_ticket_ai"] = inner
    base: ConfigPath = ("open_ticket_ai",)
    if root != "open_ticket_ai":
        move(source, (root,), base)
        done.mark(base, f"was: {root}:")
    done.notices.append(
        f"read as Open Ticket AI 1.1+ format (api_version "
        f"{inner.get('api_version', 'not given')!r}; this project reads {API_VERSION}); "
        f"{MIGRATE_HINT}"
    )
    _check_api_version(inner.pop("api_version", None), done, (*base, "api_version"))
    infrastructure = inner.pop("infrastructure", None)
    services = inner.get("services")
    if isinstance(services, dict):
        inner["services"] = _services(services, source, (*base, "services"), done)
    orchestrator = inner.get("orchestrator")
    if isinstance(orchestrator, dict) and "use" in orchestrator:
        inner["orchestrator"] = _orchestrator(orchestrator, source, (*base, "orchestrator"), done)
    if infrastructure is not None:
        _infrastructure(infrastructure, inner, source, base, done)
    return done


def _check_api_version(wanted: Any, done: Translation, path: ConfigPath) -> None:
    if wanted is None:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specifier = SpecifierSet(str(wanted))
    except InvalidSpecifier:
        done.problems.append(
            (f"api_version {wanted!r} is not a version specifier (like '>=1.0.0')", path)
        )
        return
    if API_VERSION not in specifier:
        done.problems.append(
            (
                f"api_version {wanted!r} cannot be met: this project reads Open Ticket AI's "
                f"configuration API {API_VERSION}",
                path,
            )
        )


def _infrastructure(
    infrastructure: Any,
    inner: dict[str, Any],
    source: SourceMap,
    base: ConfigPath,
    done: Translation,
) -> None:
    """``infrastructure``: its logging as ``orchestrator.logging``; the rest has no meaning."""
    old: ConfigPath = (*base, "infrastructure")
    if not isinstance(infrastructure, dict):
        done.notices.append("infrastructure: not a mapping; nothing of it is read")
        return
    for key in infrastructure:
        if key == "logging":
            continue
        what = "templates are built in here" if "template" in key else "no meaning here"
        done.notices.append(f"infrastructure.{key}: {what}")
    if "logging" in infrastructure:
        settings, origin = logging_of(infrastructure["logging"], (*old, "logging"), done)
        orchestrator = inner.setdefault("orchestrator", {})
        if settings and isinstance(orchestrator, dict):
            new: ConfigPath = (*base, "orchestrator", "logging")
            orchestrator["logging"] = settings
            move(source, (*old, "logging"), new)
            for key, was in origin.items():
                move(source, was, (*new, key))
            done.mark(new, "was: infrastructure.logging")


_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def logging_of(
    logging: Any, path: ConfigPath, done: Translation
) -> tuple[dict[str, Any], dict[str, ConfigPath]]:
    """Open Ticket AI's logging settings (1.1+: ``{level, log_to_file, log_file_path,
    format}``; 1.0: a ``logging.config.dictConfig`` mapping) as this project's
    ``orchestrator.logging: {level, file}``, with a notice for what has no meaning here.
    Also returns where each setting was read from."""
    if not isinstance(logging, dict):
        done.notices.append(f"{format_path(path)}: not a mapping; nothing of it is read")
        return {}, {}
    settings: dict[str, Any] = {}
    origin: dict[str, ConfigPath] = {}
    ignored: list[str] = []
    if "version" in logging or "handlers" in logging or "root" in logging:  # dictConfig
        root = logging.get("root")
        if isinstance(root, dict) and "level" in root:
            settings["level"], origin["level"] = root["level"], (*path, "root", "level")
        handlers = logging.get("handlers")
        for name, handler in (handlers if isinstance(handlers, dict) else {}).items():
            if isinstance(handler, dict) and handler.get("filename") and "file" not in settings:
                settings["file"] = handler["filename"]
                origin["file"] = (*path, "handlers", name, "filename")
        ignored = [k for k in logging if k not in ("version", "root", "handlers")]
        ignored += ["handlers' classes, streams and formatters"] if handlers else []
    else:
        if "level" in logging:
            settings["level"], origin["level"] = logging["level"], (*path, "level")
        if logging.get("log_to_file") and logging.get("log_file_path"):
            settings["file"] = logging["log_file_path"]
            origin["file"] = (*path, "log_file_path")
        elif logging.get("log_to_file"):
            ignored.append("log_to_file without log_file_path")
        ignored += [k for k in logging if k not in ("level", "log_to_file", "log_file_path")]
    if isinstance(settings.get("level"), str) and settings["level"].upper() in _LEVELS:
        settings["level"] = settings["level"].upper()
        if settings["level"] == "CRITICAL":
            settings["level"] = "ERROR"
    read = ", ".join(f"{k} {v!r}" for k, v in settings.items()) or "nothing"
    note = f"{format_path(path)}: read as orchestrator.logging ({read}); "
    note += "otai run --log-level and --log-file win over it"
    if ignored:
        note += f"; no meaning here: {', '.join(ignored)} (log lines have this project's form: "
        note += "otai run --log-format text|json)"
    done.notices.append(note)
    return settings, origin


def _services(
    services: dict[str, Any], source: SourceMap, path: ConfigPath, done: Translation
) -> list[Any]:
    """The mapping ``id -> {use, params, injects}`` as the list of ``{id, use, params}``."""
    listed: list[Any] = []
    done.mark(path, "was: a mapping from id to {use, params}")
    for service_id, definition in services.items():
        if not isinstance(definition, dict):
            listed.append(definition)
            move(source, (*path, service_id), (*path, len(listed) - 1))
            continue
        use = str(definition.get("use", ""))
        if upstream_component(use) == "":
            done.notices.append(f"service {service_id!r} ({use}): templates are built in here")
            continue
        index = len(listed)
        new: ConfigPath = (*path, index)
        move(source, (*path, service_id), new)
        key = source.keys.get((*path, service_id))
        if key is not None:
            source.values[(*new, "id")] = key
        definition.pop("injects", None)
        listed.append({"id": service_id, **definition})
        component(listed[-1], source, new, done)
    return listed


def _orchestrator(
    orchestrator: dict[str, Any], source: SourceMap, path: ConfigPath, done: Translation
) -> dict[str, Any]:
    """The orchestrator written as a pipe, as ``{runners: [...]}``."""
    params = orchestrator.get("params") or {}
    for name in _SLEEPS:
        if name in params:
            done.notices.append(
                f"orchestrator {name}: not needed here (timers fire on time, nothing polls)"
            )
    done.mark(path, f"was: use: {orchestrator.get('use')}, its runners under params.steps")
    steps = params.get("steps") or []
    runners = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        old: ConfigPath = (*path, "params", "steps", index)
        new: ConfigPath = (*path, "runners", index)
        move(source, old, new)
        runners.append(_runner(step, source, old, new, done))
    return {"runners": runners}


def _runner(
    step: Any, source: SourceMap, old: ConfigPath, new: ConfigPath, done: Translation
) -> Any:
    """A ``SimpleSequentialRunner`` (``params: {on, run}``) as a runner."""
    if not isinstance(step, dict):
        return step
    params = step.get("params") or {}
    runner: dict[str, Any] = {}
    if "id" in step:
        runner["id"] = step["id"]
        done.mark((*new, "id"), f"was: use: {step.get('use')} with params: {{on, run}}")
    trigger = params.get("on")
    if trigger is not None:
        if isinstance(trigger, list):
            for i in range(len(trigger)):
                move(source, (*old, "params", "on", i), (*new, "on", i))
            runner["on"] = trigger
        else:
            move(source, (*old, "params", "on"), (*new, "on", 0))
            runner["on"] = [trigger]
        for i, item in enumerate(runner["on"]):
            component(item, source, (*new, "on", i), done)
    if "run" in params:
        move(source, (*old, "params", "run"), (*new, "run"))
        runner["run"] = _pipe(params["run"], source, (*new, "run"), done)
    return runner


def _pipe(pipe: Any, source: SourceMap, path: ConfigPath, done: Translation) -> Any:
    """A pipe with ``injects`` folded into its params and ``params.steps`` as its steps."""
    if not isinstance(pipe, dict):
        return pipe
    component(pipe, source, path, done)
    params = pipe.get("params")
    if isinstance(params, dict) and isinstance(params.get("steps"), list):
        steps = params.pop("steps")
        for index in range(len(steps)):
            move(source, (*path, "params", "steps", index), (*path, "steps", index))
        done.mark((*path, "steps"), "was: params.steps")
        pipe["steps"] = [
            _pipe(step, source, (*path, "steps", index), done) for index, step in enumerate(steps)
        ]
        if not params:
            pipe.pop("params")
    return pipe


def component(definition: Any, source: SourceMap, path: ConfigPath, done: Translation) -> Any:
    """A component with Open Ticket AI's name for it (``base:FetchTicketsPipe``, a 1.0
    module path) as this project's short name, and ``injects: {param: service_id}`` as
    params (a param given both ways keeps its own)."""
    if not isinstance(definition, dict):
        return definition
    use = definition.get("use")
    ours = upstream_component(use) if isinstance(use, str) else None
    if ours:
        definition["use"] = ours
        done.mark((*path, "use"), f"was: use: {use}")
    injects = definition.pop("injects", None)
    if isinstance(injects, dict) and injects:
        params = definition.get("params")
        params = dict(params) if isinstance(params, dict) else {}
        for name in injects:
            if name not in params:
                move(source, (*path, "injects", name), (*path, "params", name))
                done.mark((*path, "params", name), "was: injects")
        definition["params"] = {**injects, **params}
        if (*path, "params") not in source.values:
            move(source, (*path, "injects"), (*path, "params"))
    return definition


def move(source: SourceMap, old: ConfigPath, new: ConfigPath) -> None:
    """Every position at or below ``old`` also stands at the same place below ``new``."""
    size = len(old)
    for table in (source.values, source.keys):
        moved = {
            (*new, *path[size:]): position for path, position in table.items() if path[:size] == old
        }
        table.update(moved)
