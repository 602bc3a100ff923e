"""Reading configs written in Open Ticket AI's 1.0 format (the seed's), as they are.

That format is close to this project's own: ``open_ticket_ai:`` holding ``services`` (a list
of ``{id, use, params}``) and ``orchestrator.runners``. It differs in what :func:`translate_v10`
rewrites, in place and with the source map's positions moved along (as
:mod:`open_ticket_ai.core.config.upstream` does for the 1.1+ format):

- ``use:`` as Open Ticket AI's module paths (``open_ticket_ai.base.pipes.ticket_system_pipes.
  fetch_tickets_pipe:FetchTicketsPipe``, ``otai_otobo_znuny...``): this project's short names;
  ``HFLocalTextClassificationPipe`` (``model``, ``prompt``) becomes ``ClassificationPipe``
  (``model_name``, ``text``) with an ``HFClassificationService``;
- ids it allowed to leave out (runners, steps, triggers): generated from the runner's pipe,
  the class name and the position, unique;
- ``injects: {param: service_id}``: params; FetchTicketsPipe's ``search_criteria``:
  ``ticket_search_criteria``;
- a runner's ``timeout``, ``retry``, ``retry_scope``, ``concurrency``, ``priority`` (on the
  runner or under its ``params``) and ``orchestrator.defaults``: this project's settings where
  one means the same, else a notice saying why it has none here;
- ``infrastructure``: its logging (a ``dictConfig``) as ``orchestrator.logging``; the Jinja
  renderer service and ``default_template_renderer``: dropped with a notice.

A config written in the seed's format that needs none of this is this project's own format
and is read with no notice.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from open_ticket_ai.core.config.upstream import (
    MIGRATE_HINT,
    ROOT_ALIASES,
    Translation,
    component,
    logging_of,
    move,
)
from open_ticket_ai.core.config.yaml_source import ConfigPath, SourceMap
from open_ticket_ai.core.registry import MODULE_ALIASES, upstream_component

__all__ = ["is_v10", "translate_v10"]

RUNNER_SETTINGS = ("timeout", "retry", "retry_scope", "concurrency", "priority")
"""What a 1.0 runner may set on itself or under its ``params``."""
_HF_PIPE = "HFLocalTextClassificationPipe"
_HF_SERVICE = "HFClassificationService"
_WAITING = frozenset({"wait", "queue", "block", "enqueue"})
_WHOLE_RUN = frozenset({"pipeline", "pipe", "runner", "run"})
_EACH_STEP = frozenset({"step", "steps"})


def _app(data: Any) -> tuple[dict[str, Any], ConfigPath] | None:
    """The mapping holding ``services``/``orchestrator`` and its path (None: neither form)."""
    if not isinstance(data, dict):
        return None
    if len(data) == 1 and next(iter(data)) in ROOT_ALIASES:
        root = next(iter(data))
        inner = data[root]
        return (inner, (root,)) if isinstance(inner, dict) else None
    if "orchestrator" in data:
        return data, ()
    return None


def is_v10(data: Any) -> bool:
    """Whether ``data`` (a parsed YAML document) is in Open Ticket AI's 1.0 format and needs
    translating: it has something of that format this project's own does not read."""
    found = _app(data)
    if found is None:
        return False
    app, _ = found
    orchestrator = app.get("orchestrator")
    if (
        "api_version" in app
        or isinstance(app.get("services"), dict)
        or (isinstance(orchestrator, dict) and "use" in orchestrator)
    ):
        return False  # the 1.1+ format
    if "infrastructure" in app:
        return True
    services = app.get("services")
    if isinstance(services, list) and any(_foreign(s) for s in services):
        return True
    if not isinstance(orchestrator, dict):
        return False
    if "defaults" in orchestrator:
        return True
    runners = orchestrator.get("runners")
    for runner in runners if isinstance(runners, list) else []:
        if not isinstance(runner, dict):
            continue
        if not _ours_runner(runner):
            return True
        triggers = runner.get("on")
        for trigger in triggers if isinstance(triggers, list) else []:
            if _foreign(trigger):
                return True
        if _foreign_pipe(runner.get("run")):
            return True
    return False


def _ours_runner(runner: dict[str, Any]) -> bool:
    """A runner this project's own format reads as it is (``timeout`` is ours too)."""
    return "id" in runner and set(runner) & {*RUNNER_SETTINGS, "params"} <= {"timeout"}


def _foreign(definition: Any) -> bool:
    if not isinstance(definition, dict):
        return False
    if "injects" in definition:
        return True
    use = definition.get("use")
    return isinstance(use, str) and upstream_component(use) is not None and not _native(use)


def _foreign_pipe(pipe: Any) -> bool:
    if not isinstance(pipe, dict):
        return False
    if _foreign(pipe):
        return True
    steps = pipe.get("steps")
    return isinstance(steps, list) and any(_foreign_pipe(step) for step in steps)


def _native(use: str) -> bool:
    """Whether this project resolves ``use`` as the module path it is (the seed's spellings:
    ``open_ticket_ai.base:CompositePipe``, ``open_ticket_ai.base.interval_trigger:...``)."""
    module, _, name = use.partition(":")
    module = MODULE_ALIASES.get(module, module)
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except (ImportError, ValueError):
        return False
    return hasattr(importlib.import_module(module), name)


@dataclass
class _Context:
    source: SourceMap
    done: Translation
    pipe_defaults: dict[str, Any] = field(default_factory=dict)
    hf_service: str | None = None
    hf_needed: bool = False
    service_ids: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    """The step ids of the runner met so far (results are kept by id per run here)."""
    renamed: list[str] = field(default_factory=list)


def translate_v10(data: dict[str, Any], source: SourceMap) -> Translation:
    """Rewrite a 1.0 document (see :func:`is_v10`) into this project's form, in place;
    positions of the source map move with the values."""
    found = _app(data)
    assert found is not None
    app, base = found
    done = Translation(format="Open Ticket AI 1.0")
    done.notices.append(f"read as Open Ticket AI 1.0 format; {MIGRATE_HINT}")
    ctx = _Context(source, done)
    infrastructure = app.pop("infrastructure", None)
    services = app.get("services")
    if isinstance(services, list):
        app["services"] = _services(services, (*base, "services"), ctx)
    orchestrator = app.get("orchestrator")
    if isinstance(orchestrator, dict):
        _orchestrator(orchestrator, (*base, "orchestrator"), ctx)
    if infrastructure is not None:
        _infrastructure(infrastructure, app, base, ctx)
    if ctx.hf_needed and ctx.hf_service is not None and ctx.hf_service not in ctx.service_ids:
        listed = app.setdefault("services", [])
        if isinstance(listed, list):
            listed.append({"id": ctx.hf_service, "use": _HF_SERVICE})
            done.mark(
                (*base, "services", len(listed) - 1, "id"),
                f"added: the models {_HF_PIPE} loaded itself, served once per model",
            )
    return done


def _infrastructure(
    infrastructure: Any, app: dict[str, Any], base: ConfigPath, ctx: _Context
) -> None:
    old: ConfigPath = (*base, "infrastructure")
    if not isinstance(infrastructure, dict):
        ctx.done.notices.append("infrastructure: not a mapping; nothing of it is read")
        return
    for key in infrastructure:
        if key == "default_template_renderer":
            ctx.done.notices.append(
                "infrastructure.default_template_renderer: templates are built in here"
            )
        elif key != "logging":
            ctx.done.notices.append(f"infrastructure.{key}: no meaning here")
    if "logging" not in infrastructure:
        return
    settings, origin = logging_of(infrastructure["logging"], (*old, "logging"), ctx.done)
    orchestrator = app.setdefault("orchestrator", {})
    if settings and isinstance(orchestrator, dict):
        new: ConfigPath = (*base, "orchestrator", "logging")
        orchestrator["logging"] = settings
        move(ctx.source, (*old, "logging"), new)
        for key, was in origin.items():
            move(ctx.source, was, (*new, key))
        ctx.done.mark(new, "was: infrastructure.logging")


def _services(services: list[Any], path: ConfigPath, ctx: _Context) -> list[Any]:
    kept: list[Any] = []
    for index, service in enumerate(services):
        use = service.get("use") if isinstance(service, dict) else None
        if isinstance(use, str) and upstream_component(use) == "":
            name = service.get("id", index)
            ctx.done.notices.append(f"service {name!r} ({use}): templates are built in here")
            continue
        new: ConfigPath = (*path, len(kept))
        if new != (*path, index):
            move(ctx.source, (*path, index), new)
        kept.append(component(service, ctx.source, new, ctx.done))
        if isinstance(service, dict):
            service.pop("injects", None)
            if isinstance(service.get("id"), str):
                ctx.service_ids.add(service["id"])
                if service.get("use") == _HF_SERVICE and ctx.hf_service is None:
                    ctx.hf_service = service["id"]
    return kept


def _orchestrator(orchestrator: dict[str, Any], path: ConfigPath, ctx: _Context) -> None:
    defaults = orchestrator.pop("defaults", None)
    runner_defaults: dict[str, Any] = {}
    if isinstance(defaults, dict):
        for key, value in defaults.items():
            if key == "template_renderer":
                ctx.done.notices.append(
                    "orchestrator.defaults.template_renderer: templates are built in here"
                )
            elif key == "pipe_defaults" and isinstance(value, dict):
                ctx.pipe_defaults = _pipe_defaults(value, ctx)
            elif key in RUNNER_SETTINGS:
                runner_defaults[key] = value
            else:
                ctx.done.notices.append(f"orchestrator.defaults.{key}: no meaning here")
    elif defaults is not None:
        ctx.done.notices.append("orchestrator.defaults: not a mapping; nothing of it is read")
    runners = orchestrator.get("runners")
    if not isinstance(runners, list):
        return
    taken = {r["id"] for r in runners if isinstance(r, dict) and isinstance(r.get("id"), str)}
    for index, runner in enumerate(runners):
        if isinstance(runner, dict):
            _runner(runner, (*path, "runners", index), index, taken, runner_defaults, ctx)


def _pipe_defaults(defaults: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    """``pipe_defaults``: ``retry`` and ``timeout`` given to every pipe without its own."""
    applied: dict[str, Any] = {}
    for key, value in defaults.items():
        where = f"orchestrator.defaults.pipe_defaults.{key}"
        if key == "retry" and isinstance(value, dict):
            if _attempts(value) <= 1:
                ctx.done.notices.append(
                    f"{where}: {_attempts(value)} attempt(s) retries nothing; left out"
                )
            else:
                applied["retry"] = value
        elif key == "timeout":
            applied["timeout"] = value
        else:
            ctx.done.notices.append(f"{where}: no meaning here")
    return applied


def _attempts(retry: dict[str, Any]) -> int:
    attempts = retry.get("attempts", 3)
    return attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 3


def _runner(
    runner: dict[str, Any],
    path: ConfigPath,
    index: int,
    taken: set[str],
    defaults: dict[str, Any],
    ctx: _Context,
) -> None:
    run = runner.get("run")
    if "id" not in runner:
        run_id = run.get("id") if isinstance(run, dict) else None
        wanted = f"{run_id}-runner" if isinstance(run_id, str) and run_id else f"runner-{index + 1}"
        runner_id = _unique(wanted, taken)
        taken.add(runner_id)
        _insert_first(runner, "id", runner_id)
        ctx.done.mark((*path, "id"), "generated: Open Ticket AI 1.0 needed no runner id")
    runner_id = str(runner["id"])
    settings = _runner_settings(runner, path, defaults, ctx)
    if isinstance(run, dict) and "id" not in run:
        _insert_first(run, "id", f"{runner_id}-run")
        ctx.done.mark((*path, "run", "id"), "generated: Open Ticket AI 1.0 needed no id")
    triggers = runner.get("on")
    if isinstance(triggers, list):
        for i, trigger in enumerate(triggers):
            component(trigger, ctx.source, (*path, "on", i), ctx.done)
            if isinstance(trigger, dict) and "id" not in trigger:
                _insert_first(trigger, "id", f"{runner_id}-trigger-{i + 1}")
                ctx.done.mark((*path, "on", i, "id"), "generated: Open Ticket AI 1.0 needed none")
    if isinstance(run, dict):
        ctx.seen = {str(run.get("id"))}
        ctx.renamed = []
        _pipe(run, (*path, "run"), ctx)
        if ctx.renamed:
            ctx.done.notices.append(
                f"runner {runner_id!r}: step ids that Open Ticket AI 1.0 kept apart per "
                "composite are one run's here, so these were renamed (and the templates of "
                f"their composite that name them): {', '.join(ctx.renamed)}"
            )
        _apply_runner_settings(runner, run, path, settings, ctx)


def _runner_settings(
    runner: dict[str, Any], path: ConfigPath, defaults: dict[str, Any], ctx: _Context
) -> dict[str, tuple[Any, ConfigPath | None]]:
    """The runner's 1.0 settings (from the runner, its ``params``, the defaults), each with
    where it was written (None: the defaults); the runner is left without them."""
    params = runner.get("params")
    found: dict[str, tuple[Any, ConfigPath | None]] = {}
    if isinstance(params, dict):
        for key in list(params):
            if key in RUNNER_SETTINGS:
                found[key] = (params.pop(key), (*path, "params", key))
            else:
                ctx.done.notices.append(
                    f"runner {runner['id']!r} params.{key}: a runner has no params here; left out"
                )
        runner.pop("params")
    elif "params" in runner:
        runner.pop("params")
    for key in RUNNER_SETTINGS:
        if key in runner:  # on the runner itself: wins over its params
            found[key] = (runner.pop(key), (*path, key))
    for key, value in defaults.items():
        found.setdefault(key, (value, None))
    return found


def _apply_runner_settings(
    runner: dict[str, Any],
    run: dict[str, Any],
    path: ConfigPath,
    settings: dict[str, tuple[Any, ConfigPath | None]],
    ctx: _Context,
) -> None:
    name = f"runner {runner['id']!r}"
    note = ctx.done.notices.append

    def was(key: str, where: ConfigPath | None) -> str:
        return "was: orchestrator.defaults" if where is None else f"was: {key} of the runner"

    if "timeout" in settings:
        value, where = settings["timeout"]
        runner["timeout"] = value
        if where is not None and where != (*path, "timeout"):
            move(ctx.source, where, (*path, "timeout"))
            ctx.done.mark((*path, "timeout"), "was: params.timeout")
        elif where is None:
            ctx.done.mark((*path, "timeout"), was("timeout", None))
    if "retry" in settings:
        value, where = settings["retry"]
        scope, _ = settings.get("retry_scope", ("pipeline", None))
        scope = str(scope).lower()
        if not isinstance(value, dict):
            note(f"{name} retry: not a mapping; left out")
        elif _attempts(value) <= 1:
            note(f"{name} retry: {_attempts(value)} attempt(s) retries nothing; left out")
        elif scope in _EACH_STEP:
            for step_path, step in _leaves(run, (*path, "run")):
                if "retry" not in step:
                    step["retry"] = dict(value)
                    if where is not None:
                        move(ctx.source, where, (*step_path, "retry"))
                    ctx.done.mark((*step_path, "retry"), f"{was('retry', where)} (each step)")
        else:
            if scope not in _WHOLE_RUN:
                note(f"{name} retry_scope {scope!r}: unknown; the whole pipeline is retried")
            if "retry" in run:
                note(f"{name} retry: its pipe has a retry of its own, which is kept")
            else:
                run["retry"] = value
                if where is not None:
                    move(ctx.source, where, (*path, "run", "retry"))
                ctx.done.mark((*path, "run", "retry"), f"{was('retry', where)} (the pipeline)")
    elif "retry_scope" in settings:
        note(f"{name} retry_scope: without retry, nothing to scope; left out")
    if "concurrency" in settings:
        _concurrency(runner, path, settings["concurrency"], name, ctx)
    if "priority" in settings:
        note(
            f"{name} priority: no meaning here (runners do not queue for each other: each "
            "fires on its own triggers; orchestrator.max_concurrent_runs limits how many run "
            "at once); left out"
        )


def _concurrency(
    runner: dict[str, Any],
    path: ConfigPath,
    setting: tuple[Any, ConfigPath | None],
    name: str,
    ctx: _Context,
) -> None:
    value, where = setting
    if not isinstance(value, dict):
        ctx.done.notices.append(f"{name} concurrency: not a mapping; left out")
        return
    workers = value.get("max_workers", 1)
    if workers != 1:
        ctx.done.notices.append(
            f"{name} concurrency.max_workers {workers!r}: runs of one runner never overlap "
            "here (overlap: queue_one keeps one more fire waiting)"
        )
    exhausted = str(value.get("when_exhausted", "skip")).lower()
    text = f"was: concurrency: {{max_workers: {workers}, when_exhausted: {exhausted}}}"
    if exhausted in _WAITING:
        runner["overlap"] = "queue_one"
        if where is not None:
            move(ctx.source, where, (*path, "overlap"))
        ctx.done.mark((*path, "overlap"), text)
    else:
        ctx.done.notices.append(
            f"{name} concurrency.when_exhausted {exhausted!r}: a fire while the runner runs is "
            "skipped here (overlap: skip, the default)"
        )
    for key in value:
        if key not in ("max_workers", "when_exhausted"):
            ctx.done.notices.append(f"{name} concurrency.{key}: no meaning here")


def _leaves(pipe: dict[str, Any], path: ConfigPath) -> list[tuple[ConfigPath, dict[str, Any]]]:
    steps = pipe.get("steps")
    if not isinstance(steps, list) or not steps:
        return [(path, pipe)]
    found: list[tuple[ConfigPath, dict[str, Any]]] = []
    for index, step in enumerate(steps):
        if isinstance(step, dict):
            found += _leaves(step, (*path, "steps", index))
    return found


def _pipe(pipe: dict[str, Any], path: ConfigPath, ctx: _Context) -> None:
    use = pipe.get("use")
    hf = isinstance(use, str) and use.rpartition(":")[2] == _HF_PIPE
    component(pipe, ctx.source, path, ctx.done)
    params = pipe.get("params")
    if pipe.get("use") == "FetchTicketsPipe" and isinstance(params, dict):
        _rename(params, "search_criteria", "ticket_search_criteria", (*path, "params"), ctx)
    if hf:
        _hf_pipe(pipe, path, ctx)
    steps = pipe.get("steps")
    if isinstance(steps, list):
        taken = {s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)}
        renames: list[tuple[str, str]] = []
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            if "id" not in step:
                kind = str(step.get("use", "CompositePipe")).rpartition(":")[2]
                step_id = f"{_kebab(kind)}-{index + 1}"
                if step_id in ctx.seen:
                    step_id = f"{pipe.get('id')}_{step_id}"
                step_id = _unique(step_id, taken | ctx.seen)
                taken.add(step_id)
                _insert_first(step, "id", step_id)
                ctx.done.mark(
                    (*path, "steps", index, "id"), "generated: Open Ticket AI 1.0 needed no id"
                )
            elif str(step["id"]) in ctx.seen:
                old_id = str(step["id"])
                step["id"] = _unique(f"{pipe.get('id')}_{old_id}", taken | ctx.seen)
                renames.append((old_id, step["id"]))
                ctx.renamed.append(f"{old_id} -> {step['id']}")
                ctx.done.mark((*path, "steps", index, "id"), f"was: id: {old_id}")
            ctx.seen.add(str(step["id"]))
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                for old_id, new_id in renames:
                    _rename_references(step, old_id, new_id)
                _pipe(step, (*path, "steps", index), ctx)
    if not pipe.get("steps"):
        for key, value in ctx.pipe_defaults.items():
            if key not in pipe:
                pipe[key] = value
                ctx.done.mark((*path, key), "was: orchestrator.defaults.pipe_defaults")
    retry = pipe.get("retry")
    if isinstance(retry, dict) and _attempts(retry) < 1:
        pipe.pop("retry")
        ctx.done.notices.append(
            f"{pipe.get('id')!r} retry: {_attempts(retry)} attempts retries nothing; left out"
        )


def _hf_pipe(pipe: dict[str, Any], path: ConfigPath, ctx: _Context) -> None:
    """``HFLocalTextClassificationPipe`` (``model``, ``prompt``, ``token``): this project's
    ``ClassificationPipe`` through one shared ``HFClassificationService``."""
    params = pipe.get("params")
    if not isinstance(params, dict):
        params = pipe["params"] = {}
    where: ConfigPath = (*path, "params")
    _rename(params, "model", "model_name", where, ctx)
    _rename(params, "prompt", "text", where, ctx)
    if "token" in params:
        params.pop("token")
        ctx.done.notices.append(
            f"{pipe.get('id')!r} token: models are read from the local Hugging Face cache or a "
            "directory here (a private model must be there already); left out"
        )
    if ctx.hf_service is None:
        ctx.hf_service = _unique("hf_local", ctx.service_ids)
    ctx.hf_needed = True
    if "classification_service" not in params:
        params["classification_service"] = ctx.hf_service
        ctx.done.mark((*where, "classification_service"), f"added: {_HF_PIPE} loaded its model")


_STEP_CALL = r"((?:get_)?pipe_result|has_failed|has_succeeded)\(\s*(['\"]){old}\2"
_STEP_ITEM = r"(pipe_results\[\s*(['\"])){old}\2"


def _rename_references(value: Any, old: str, new: str) -> Any:
    """Every template in ``value`` (a step, in place) naming the step ``old`` names ``new``."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _rename_references(item, old, new)
        return value
    if isinstance(value, list):
        value[:] = [_rename_references(item, old, new) for item in value]
        return value
    if isinstance(value, str) and old in value and ("{{" in value or "{%" in value):
        quoted = re.escape(old)
        value = re.sub(_STEP_CALL.format(old=quoted), rf"\1(\2{new}\2", value)
        value = re.sub(_STEP_ITEM.format(old=quoted), rf"\1{new}\2", value)
    return value


def _rename(params: dict[str, Any], old: str, new: str, path: ConfigPath, ctx: _Context) -> None:
    if old not in params or new in params:
        return
    items = [(new if key == old else key, value) for key, value in params.items()]
    params.clear()
    params.update(items)
    move(ctx.source, (*path, old), (*path, new))
    key = ctx.source.keys.get((*path, old))
    if key is not None:
        ctx.source.keys[(*path, new)] = key
    ctx.done.mark((*path, new), f"was: {old}")


def _insert_first(mapping: dict[str, Any], key: str, value: Any) -> None:
    items = list(mapping.items())
    mapping.clear()
    mapping[key] = value
    mapping.update(items)


def _unique(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


def _kebab(name: str) -> str:
    """``UpdateTicketPipe`` -> ``update-ticket``."""
    stem = name[: -len("Pipe")] if name.endswith("Pipe") and name != "Pipe" else name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", stem).lower() or "step"
