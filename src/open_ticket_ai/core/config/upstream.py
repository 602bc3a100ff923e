"""Reading configs written in Open Ticket AI's 1.1+ format, as they are.

That format wraps everything in ``open_ticket_ai:`` (or ``otai:``, ``cfg:``) with an
``api_version``, keeps ``services`` as a mapping from id to ``{use, params, injects}``, writes
the orchestrator as a pipe (``base:SimpleSequentialOrchestrator`` whose ``params.steps`` are
``base:SimpleSequentialRunner``s with ``params: {on, run}``), puts a CompositePipe's steps
under ``params.steps`` and hands services to pipes by ``injects: {param: service_id}``.

:func:`translate` rewrites such a document, in place, into this project's own form before
anything is validated, and moves the positions of the source map along, so that every later
check and every error location (file:line:column of the original text) applies unchanged.
The runtime knows nothing of it. What has no meaning here is dropped with a notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from open_ticket_ai.core.config.yaml_source import ConfigPath, SourceMap

__all__ = ["API_VERSION", "ROOT_ALIASES", "Translation", "is_upstream", "translate"]

API_VERSION = "1.1.0"
"""The Open Ticket AI configuration API this project reads."""

ROOT_ALIASES = ("open_ticket_ai", "otai", "cfg")
_IGNORED_SERVICES = ("JinjaRenderer",)
_SLEEPS = ("orchestrator_sleep", "exception_sleep")


@dataclass
class Translation:
    """What reading a 1.1+ config did: notices (INFO) and problems (errors)."""

    notices: list[str] = field(default_factory=list)
    problems: list[tuple[str, ConfigPath]] = field(default_factory=list)


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
        or "infrastructure" in inner
        or isinstance(inner.get("services"), dict)
        or (isinstance(orchestrator, dict) and "use" in orchestrator)
    )


def translate(data: dict[str, Any], source: SourceMap) -> Translation:
    """Rewrite a 1.1+ document (see :func:`is_upstream`) into this project's wrapped form,
    in place; positions of the source map move with the values."""
    done = Translation()
    root = next(iter(data))
    inner: dict[str, Any] = data.pop(root)
    data["open_ticket_ai"] = inner
    if root != "open_ticket_ai":
        _move(source, (root,), ("open_ticket_ai",))
    base: ConfigPath = ("open_ticket_ai",)
    done.notices.append(
        f"read as Open Ticket AI's configuration format (api_version "
        f"{inner.get('api_version', 'not given')!r}; this project reads {API_VERSION})"
    )
    _check_api_version(inner.pop("api_version", None), done, (*base, "api_version"))
    if "infrastructure" in inner:
        inner.pop("infrastructure")
        done.notices.append(
            "infrastructure (logging): not read from the config; give otai run --log-level "
            "and --log-format"
        )
    services = inner.get("services")
    if isinstance(services, dict):
        inner["services"] = _services(services, source, (*base, "services"), done)
    orchestrator = inner.get("orchestrator")
    if isinstance(orchestrator, dict) and "use" in orchestrator:
        inner["orchestrator"] = _orchestrator(orchestrator, source, (*base, "orchestrator"), done)
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


def _services(
    services: dict[str, Any], source: SourceMap, path: ConfigPath, done: Translation
) -> list[Any]:
    """The mapping ``id -> {use, params, injects}`` as the list of ``{id, use, params}``."""
    listed: list[Any] = []
    for service_id, definition in services.items():
        if not isinstance(definition, dict):
            listed.append(definition)
            _move(source, (*path, service_id), (*path, len(listed) - 1))
            continue
        use = str(definition.get("use", ""))
        if use.rpartition(":")[2] in _IGNORED_SERVICES:
            done.notices.append(f"service {service_id!r} ({use}): templates are built in here")
            continue
        index = len(listed)
        _move(source, (*path, service_id), (*path, index))
        key = source.keys.get((*path, service_id))
        if key is not None:
            source.values[(*path, index, "id")] = key
        definition.pop("injects", None)
        listed.append({"id": service_id, **definition})
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
    steps = params.get("steps") or []
    runners = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        old: ConfigPath = (*path, "params", "steps", index)
        new: ConfigPath = (*path, "runners", index)
        _move(source, old, new)
        runners.append(_runner(step, source, old, new))
    return {"runners": runners}


def _runner(step: Any, source: SourceMap, old: ConfigPath, new: ConfigPath) -> Any:
    """A ``SimpleSequentialRunner`` (``params: {on, run}``) as a runner."""
    if not isinstance(step, dict):
        return step
    params = step.get("params") or {}
    runner: dict[str, Any] = {}
    if "id" in step:
        runner["id"] = step["id"]
    trigger = params.get("on")
    if trigger is not None:
        if isinstance(trigger, list):
            for i in range(len(trigger)):
                _move(source, (*old, "params", "on", i), (*new, "on", i))
            runner["on"] = [_component(t) for t in trigger]
        else:
            _move(source, (*old, "params", "on"), (*new, "on", 0))
            runner["on"] = [_component(trigger)]
    if "run" in params:
        _move(source, (*old, "params", "run"), (*new, "run"))
        runner["run"] = _pipe(params["run"], source, (*new, "run"))
    return runner


def _pipe(pipe: Any, source: SourceMap, path: ConfigPath) -> Any:
    """A pipe with ``injects`` folded into its params and ``params.steps`` as its steps."""
    if not isinstance(pipe, dict):
        return pipe
    pipe = _component(pipe)
    params = pipe.get("params")
    if isinstance(params, dict) and isinstance(params.get("steps"), list):
        steps = params.pop("steps")
        for index in range(len(steps)):
            _move(source, (*path, "params", "steps", index), (*path, "steps", index))
        pipe["steps"] = [
            _pipe(step, source, (*path, "steps", index)) for index, step in enumerate(steps)
        ]
        if not params:
            pipe.pop("params")
    return pipe


def _component(definition: Any) -> Any:
    """``injects: {param: service_id}`` as params (a param given both ways keeps its own)."""
    if not isinstance(definition, dict):
        return definition
    injects = definition.pop("injects", None)
    if isinstance(injects, dict) and injects:
        params = definition.get("params")
        params = dict(params) if isinstance(params, dict) else {}
        definition["params"] = {**injects, **params}
    return definition


def _move(source: SourceMap, old: ConfigPath, new: ConfigPath) -> None:
    """Every position at or below ``old`` also stands at the same place below ``new``."""
    size = len(old)
    for table in (source.values, source.keys):
        moved = {
            (*new, *path[size:]): position for path, position in table.items() if path[:size] == old
        }
        table.update(moved)
