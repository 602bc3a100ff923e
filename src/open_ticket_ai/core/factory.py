"""RenderableFactory: a loaded config -> compiled, ready-to-run components.

Everything that can be checked before anything runs is checked here, and every problem is
collected: `use:` resolution and kind, params (those without templates), template syntax,
duplicate ids, `depends_on` and its cycles, shared trigger ids.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from open_ticket_ai.core.compiled import CompiledConfig, RunnerSpec
from open_ticket_ai.core.component import Component
from open_ticket_ai.core.config.loader import LoadedConfig
from open_ticket_ai.core.config.models import PipeConfig, TriggerDefinition
from open_ticket_ai.core.config.pipeline_graph import cycles, finished_before, walk
from open_ticket_ai.core.config.validation import issues_of, keys_of
from open_ticket_ai.core.config.yaml_source import ConfigPath, format_path
from open_ticket_ai.core.memory import paused_gc
from open_ticket_ai.core.pipes.context import EnvReader
from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.pipes.run import PipeSpec
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.core.secrets import SECRETS, secrets_of
from open_ticket_ai.core.services import Service, ServiceRef
from open_ticket_ai.core.templates import (
    CompiledTemplate,
    EnvVars,
    TemplateEngine,
    compile_tree,
    is_template,
    render_tree,
)
from open_ticket_ai.core.triggers.base import EventTrigger, Trigger
from open_ticket_ai.errors import ComponentError, ConfigError, Problem, TemplateError

__all__ = ["CompiledConfig", "RenderableFactory", "RunnerSpec", "build"]

C = TypeVar("C", bound=Component[Any])


def build(loaded: LoadedConfig, registry: Registry | None = None) -> CompiledConfig:
    """Build every component of a loaded config; raise ConfigError listing every problem."""
    with paused_gc():
        return RenderableFactory(loaded, registry or Registry()).build()


@contextmanager
def _plugin_path(directories: list[Path]) -> Iterator[None]:
    """``directories`` on the import path while the config builds (its plugins import then),
    after what is there already: a module beside the config never shadows an installed one."""
    added = [str(d) for d in directories if str(d) not in sys.path]
    sys.path.extend(added)
    try:
        yield
    finally:
        for entry in added:
            with suppress(ValueError):
                sys.path.remove(entry)


@dataclass
class _TriggerSeen:
    definition: TriggerDefinition
    path: ConfigPath


@dataclass
class RenderableFactory:
    """Turns config models into components, collecting problems instead of stopping."""

    loaded: LoadedConfig
    registry: Registry
    engine: TemplateEngine = field(default_factory=TemplateEngine)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    """What would fail or idle at run time but need not (an environment variable that may be
    set there, a model file still to train): ``otai validate`` prints them."""
    _service_ids: set[str] = field(default_factory=set)
    _env: Mapping[str, str] = field(default_factory=dict)
    _trigger_paths: dict[str, ConfigPath] = field(default_factory=dict)

    def build(self) -> CompiledConfig:
        with _plugin_path(self._plugin_directories()):
            return self._build()

    def _plugin_directories(self) -> list[Path]:
        """The config file's directory, then each of ``plugin_paths`` relative to it."""
        config_file = Path(self.loaded.source.file)
        base = config_file.parent if config_file.is_file() else Path.cwd()
        found = [base.resolve()] if config_file.is_file() else []
        for i, entry in enumerate(self.loaded.config.plugin_paths):
            directory = (base / entry).expanduser().resolve()
            if directory.is_dir():
                found.append(directory)
            else:
                self._problem(f"no directory {str(directory)!r}", ("plugin_paths", i))
        self.registry.search_path = tuple(str(d) for d in found)
        return found

    def _build(self) -> CompiledConfig:
        config = self.loaded.config
        for i, module in enumerate(config.plugins):
            try:
                self.registry.add_module(module)
            except ComponentError as exc:
                self._problem(str(exc), ("plugins", i))
        allowed = set(config.env_allowlist)
        env = EnvVars(
            (k, v)
            for k, v in {**self.loaded.dotenv, **os.environ}.items()
            if k.startswith("OTAI_") or k in allowed
        )
        self._env = env
        load_context = {"env": env, "get_env": EnvReader(env)}
        self._check_listener_token(load_context)

        services: dict[str, Service[Any]] = {}
        self._service_ids = {definition.id for definition in config.services}
        for definition, path in zip(config.services, self.loaded.service_paths, strict=True):
            if definition.id in services:
                self._problem(f"duplicate service id {definition.id!r}", (*path, "id"))
                continue
            service = self._instantiate(
                definition.use, Service, definition.params, path, load_context, definition.id
            )
            if service is not None:
                services[definition.id] = service

        triggers = self._build_triggers(load_context)
        runners: list[RunnerSpec] = []
        seen_runners: dict[str, int] = {}
        for runner, path in zip(config.orchestrator.runners, self.loaded.runner_paths, strict=True):
            if runner.id in seen_runners:
                self._problem(
                    f"duplicate runner id {runner.id!r} (also runners[{seen_runners[runner.id]}])",
                    (*path, "id"),
                )
            seen_runners.setdefault(runner.id, int(path[-1]))
            payload = any(isinstance(triggers.get(t.id), EventTrigger) for t in runner.on)
            pipeline = self._compile_pipeline(runner.run, (*path, "run"), runner.id, payload)
            if pipeline is not None:
                trigger_ids = tuple(dict.fromkeys(t.id for t in runner.on))
                runners.append(
                    RunnerSpec(
                        runner.id,
                        self.loaded.where(path),
                        trigger_ids,
                        pipeline,
                        overlap=runner.overlap,
                        timeout=runner.timeout,
                        deadline=runner.deadline,
                        starting_deadline=runner.starting_deadline,
                    )
                )
        runner_ids = {runner.id for runner in config.orchestrator.runners}
        for trigger_id, trigger in triggers.items():
            for param, message in trigger.problems(runner_ids):
                self._problem(message, (*self._trigger_paths[trigger_id], "params", param))
        if self.problems or self.loaded.problems:
            raise ConfigError([*self.loaded.problems, *self.problems])
        return CompiledConfig(
            self.loaded, tuple(runners), triggers, services, env, tuple(self.warnings)
        )

    # -- triggers -------------------------------------------------------------------------

    def _build_triggers(self, load_context: dict[str, Any]) -> dict[str, Trigger[Any]]:
        definitions: dict[str, _TriggerSeen] = {}
        references: list[tuple[str, ConfigPath]] = []
        runners = zip(
            self.loaded.config.orchestrator.runners, self.loaded.runner_paths, strict=True
        )
        for runner, runner_path in runners:
            for t, trigger in enumerate(runner.on):
                path: ConfigPath = (*runner_path, "on", t)
                if trigger.is_reference:
                    references.append((trigger.id, path))
                    continue
                first = definitions.get(trigger.id)
                if first is None:
                    definitions[trigger.id] = _TriggerSeen(trigger, path)
                elif first.definition != trigger:
                    self._problem(
                        f"trigger {trigger.id!r} is defined again with other settings (first at "
                        f"{format_path(self.loaded.file_path(first.path))}); list it by id "
                        "alone to share it, or give it another id",
                        path,
                    )
        for trigger_id, path in references:
            if trigger_id not in definitions:
                self._problem(
                    f"trigger {trigger_id!r} is listed by id but defined nowhere; give it "
                    "'use' and 'params' here or under another runner",
                    (*path, "id"),
                )
        built: dict[str, Trigger[Any]] = {}
        for trigger_id, seen in definitions.items():
            instance = self._instantiate(
                seen.definition.component,
                Trigger,
                seen.definition.params or {},
                seen.path,
                load_context,
                trigger_id,
            )
            if instance is not None:
                built[trigger_id] = instance
                self._trigger_paths[trigger_id] = seen.path
        return built

    # -- pipes ----------------------------------------------------------------------------

    def _compile_pipeline(
        self, config: PipeConfig, path: ConfigPath, runner: str, payload: bool
    ) -> PipeSpec | None:
        ids: dict[str, ConfigPath] = {}
        self._collect_ids(config, path, ids)
        self._check_dependencies(config, path, ids)
        scope = _Scope(runner, frozenset(ids), finished_before(config), payload, RUN_NAMES)
        return self._compile_pipe(config, path, scope)

    def _collect_ids(
        self, config: PipeConfig, path: ConfigPath, ids: dict[str, ConfigPath]
    ) -> None:
        if config.id in ids:
            self._problem(
                f"duplicate pipe id {config.id!r} in this runner (first at "
                f"{format_path(self.loaded.file_path(ids[config.id]))}); results are kept by id",
                (*path, "id"),
            )
        else:
            ids[config.id] = path
        for i, step in enumerate(config.steps):
            self._collect_ids(step, (*path, "steps", i), ids)

    def _check_dependencies(
        self, root: PipeConfig, root_path: ConfigPath, ids: dict[str, ConfigPath]
    ) -> None:
        # Plain loops and module functions, no recursive closures: those would leave a
        # reference cycle per runner for the collector.
        order = walk(root, root_path)
        if not any(config.depends_on for config, _ in order):
            return
        graph: dict[str, list[str]] = {}
        for config, _ in order:
            graph.setdefault(config.id, []).extend(d for d in config.depends_on if d in ids)
        in_cycle = cycles(graph)
        reported_cycles: set[frozenset[str]] = set()
        finished = finished_before(root)
        for config, path in order:
            for index, dep in enumerate(config.depends_on):
                where = (*path, "depends_on", index)
                cycle = in_cycle.get((config.id, dep))
                if dep not in ids:
                    self._problem(f"depends_on names unknown step {dep!r}", where)
                elif cycle is not None:
                    if frozenset(cycle) not in reported_cycles:
                        reported_cycles.add(frozenset(cycle))
                        self._problem(f"dependency cycle: {' -> '.join(cycle)}", where)
                elif dep not in finished[id(config)]:
                    self._problem(
                        f"depends_on names step {dep!r}, which has not run yet at this point; "
                        "a step can only depend on steps that finish before it starts",
                        where,
                    )

    def _compile_pipe(self, config: PipeConfig, path: ConfigPath, scope: _Scope) -> PipeSpec | None:
        pipe_class = self._resolve(config.use, Pipe, (*path, "use"))
        # A for_each pipe's params, ``if`` and nested steps see ``item`` and ``loop``; its
        # ``for_each`` itself does not.
        inner = scope.inside_loop() if config.for_each is not None else scope
        steps = [
            self._compile_pipe(step, (*path, "steps", i), inner)
            for i, step in enumerate(config.steps)
        ]
        if pipe_class is None:
            return None
        if config.steps and not pipe_class.accepts_steps:
            self._problem(
                f"{config.use!r} does not run nested steps; use CompositePipe for 'steps'",
                (*path, "steps"),
            )
        if pipe_class.accepts_steps and "steps" in config.params:
            self._problem(
                "steps go beside params, not inside them: move them up one level, to "
                f"{format_path(self.loaded.file_path((*path, 'steps')))} (the Open Ticket AI "
                "1.1 spelling ran nothing)",
                (*path, "params", "steps"),
                key=True,
            )
        params_path = (*path, "params")
        tree, templated = self._compile(config.params, params_path)
        finished = scope.finished.get(id(config), frozenset())
        self._check_templates(tree, inner, finished)
        static: BaseModel | None = None
        if templated:
            self._check_params(pipe_class, config.params, params_path, partial=True)
        else:
            static = self._check_params(pipe_class, config.params, params_path, partial=False)
            if static is not None:
                SECRETS.add(secrets_of(static))
        self._check_service_refs(pipe_class, config.params, params_path)
        condition: CompiledTemplate | bool | int | float | str | None = config.if_
        if is_template(config.if_):
            condition, _ = self._compile(config.if_, (*path, "if"))
            self._check_templates(condition, inner, finished)
        for_each: Any = config.for_each
        if for_each is not None:
            for_each, _ = self._compile(for_each, (*path, "for_each"))
            self._check_templates(for_each, scope, finished)
        elif config.concurrency != 1:
            self._problem(
                "concurrency applies to the items of a for_each pipe, and this pipe has no "
                "for_each: add one, or remove concurrency",
                (*path, "concurrency"),
                key=True,
            )
        if any(step is None for step in steps):
            return None
        return PipeSpec(
            id=config.id,
            path=self.loaded.where(path),
            pipe_class=pipe_class,
            params_tree=tree,
            static_params=static,
            static_raw=config.params if static is not None else None,
            condition=condition,
            for_each=for_each,
            concurrency=config.concurrency,
            depends_on=tuple(config.depends_on),
            retry=config.retry,
            timeout=config.timeout,
            steps=tuple(s for s in steps if s is not None),
        )

    def _check_templates(self, tree: Any, scope: _Scope, finished: frozenset[str]) -> None:
        """What each run-time template in ``tree`` reads must exist where it renders: its
        names, the steps it asks about (finished before it), ``trigger.payload`` (only with
        an event trigger); an environment variable not set now is a warning."""
        for template in templates_in(tree):
            names = template.names
            where = template.loc
            for name in sorted(names.free - scope.names - self.engine.globals):
                self._problem(self._unknown_name(name, template, scope), where)
            for function, step in names.steps:
                if step not in scope.ids:
                    close = get_close_matches(step, scope.ids, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    self._problem(
                        f"{function}({step!r}): runner {scope.runner!r} has no step {step!r}{hint}",
                        where,
                    )
                elif step not in finished:
                    self._problem(
                        f"{function}({step!r}): step {step!r} has not run yet where this "
                        "renders; only steps that finish before this one are there",
                        where,
                    )
            if names.payload and not scope.payload:
                self._warn(
                    f"trigger.payload: runner {scope.runner!r} has no event trigger (a "
                    "webhook, RunnerFinishedTrigger): its runs have no payload, but for "
                    "manual fires (otai trigger) that send one",
                    where,
                )
            for variable in sorted(v for v in names.env if v not in self._env):
                self._warn(
                    f"environment variable {variable} is not set: this fails at run time "
                    "unless it is set there",
                    where,
                )

    def _unknown_name(self, name: str, template: CompiledTemplate, scope: _Scope) -> str:
        if name in LOOP_NAMES:
            return f"{name!r} is only defined inside a for_each pipe (its params, if and steps)"
        known = sorted(scope.names | self.engine.globals)
        close = get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known here: {', '.join(known)}"
        kind = "function" if name in template.calls else "name"
        return f"unknown {kind} {name!r} in {template.source!r}{hint}"

    def _check_listener_token(self, load_context: Mapping[str, Any]) -> None:
        """``orchestrator.http.token`` as a template must render now (its env is set)."""
        http = self.loaded.config.orchestrator.http
        token = http.token if http is not None else None
        if not is_template(token):
            return
        path: ConfigPath = ("orchestrator", "http", "token")
        try:
            template = self.engine.compile(str(token), self.loaded.where(path), path)
            template.render(load_context)
        except TemplateError as exc:
            self._problem(exc.reason, path)

    # -- shared helpers -------------------------------------------------------------------

    def _compile(self, value: Any, path: ConfigPath) -> tuple[Any, bool]:
        """Compile every template in ``value``; report each syntax error, not just the first.

        A template that fails to compile still counts as a template, so that its params are
        not validated as if it were the literal value."""
        if isinstance(value, dict):
            tree: dict[str, Any] = {}
            found = False
            for key, item in value.items():
                tree[key], has = self._compile(item, (*path, key))
                found = found or has
            return tree, found
        if isinstance(value, list):
            items = [self._compile(item, (*path, i)) for i, item in enumerate(value)]
            return [item for item, _ in items], any(has for _, has in items)
        if isinstance(value, str) and "${" in value and (shell := _SHELL_VARIABLE.search(value)):
            name = shell.group(1)
            self._problem(
                f"{shell.group(0)!r} is not replaced here: write '{{{{ env.{name} }}}}' "
                f"(templates see variables starting with OTAI_ and those in env_allowlist)",
                path,
            )
        try:
            return compile_tree(self.engine, value, path, self.loaded.where)
        except TemplateError as exc:
            self._problem(exc.reason, exc.loc or path)
            return value, True

    def _resolve(self, use: str, kind: type[C], path: ConfigPath) -> type[C] | None:
        try:
            return self.registry.resolve(use, kind)
        except ComponentError as exc:
            self._problem(str(exc), path)
            return None

    def _check_service_refs(
        self, cls: type[Component[Any]], params: Mapping[str, Any], path: ConfigPath
    ) -> None:
        """Params typed ``ServiceId`` must name a declared service (templates wait)."""
        for name, info in cls.Params.model_fields.items():
            ref = next((meta for meta in info.metadata if isinstance(meta, ServiceRef)), None)
            if ref is None:
                continue
            key = info.alias or name
            value = params.get(key, info.default)
            if not isinstance(value, str) or is_template(value) or value in self._service_ids:
                continue
            known = ", ".join(sorted(self._service_ids)) or "none declared"
            if not ref.or_path:
                self._problem(f"no service {value!r} (services: {known})", (*path, key))
            elif not _looks_like_path(value):
                self._problem(
                    f"no service {value!r} (services: {known}); a file is named by a path "
                    "(with a '/' or an extension), as in model: models/queue.joblib",
                    (*path, key),
                )
            elif not Path(value).expanduser().exists():
                self._warn(
                    f"no service {value!r} and no file there yet (services: {known}); "
                    "train a model with `otai train` (the demo's: `otai demo setup`)",
                    (*path, key),
                )

    def _check_params(
        self,
        cls: type[Component[Any]],
        params: Mapping[str, Any],
        path: ConfigPath,
        *,
        partial: bool,
    ) -> BaseModel | None:
        """Validate params; with ``partial``, keys holding templates wait for run time (an
        unknown key is an error at once, whatever its value)."""
        waiting: set[str] = set()
        data = params
        if partial:
            known = _known_keys(cls.Params)
            waiting = {k for k, v in params.items() if k in known and _holds_template(v)}
            data = {k: v for k, v in params.items() if k not in waiting}
        try:
            return cls.Params.model_validate(data)
        except ValidationError as exc:
            for issue in issues_of(exc, cls.Params):
                if partial and (not issue.loc or issue.loc[0] in waiting):
                    continue
                self._problem(issue.message, (*path, *issue.loc), key=issue.at_key)
            return None

    def _instantiate(
        self,
        use: str,
        kind: type[C],
        params: Mapping[str, Any],
        path: ConfigPath,
        load_context: dict[str, Any],
        component_id: str,
    ) -> C | None:
        """Resolve, render (with ``env`` only) and validate a load-time component."""
        cls = self._resolve(use, kind, (*path, "use"))
        tree, _ = self._compile(dict(params), (*path, "params"))
        if cls is None:
            return None
        unknown = False
        for template in templates_in(tree):
            for name in sorted(template.names.free - LOAD_NAMES - self.engine.globals):
                unknown = True
                self._problem(
                    f"unknown name {name!r} in {template.source!r}: the params of services "
                    "and triggers render once, at load, and see only 'env' (and get_env)",
                    template.loc,
                )
        if unknown:
            return None
        try:
            rendered = render_tree(tree, load_context)
        except TemplateError as exc:
            self._problem(exc.reason, exc.loc or (*path, "params"))
            return None
        model = self._check_params(cls, rendered, (*path, "params"), partial=False)
        if model is None:
            return None
        SECRETS.add(secrets_of(model))
        try:
            instance = cls(model, id=component_id)  # type: ignore[call-arg]
        except Exception as exc:
            self._problem(f"building {use!r} failed: {type(exc).__name__}: {exc}", path)
            return None
        for param, message in instance.warnings():
            self._warn(message, (*path, "params", param))
        return instance

    def _problem(self, message: str, path: ConfigPath, *, key: bool = False) -> None:
        self.problems.append(self.loaded.problem(message, path, key=key))

    def _warn(self, message: str, path: ConfigPath) -> None:
        self.warnings.append(self.loaded.problem(message, path))


@functools.cache
def _known_keys(model: type[BaseModel]) -> frozenset[str]:
    """The top-level keys ``model`` accepts: aliases, and field names too where it
    populates by name (asked once per class: 10,000 runners share a few)."""
    known = set(keys_of(model, ()))
    if model.model_config.get("populate_by_name"):
        known.update(model.model_fields)
    return frozenset(known)


_SHELL_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}")
"""``${VAR}`` (or ``${VAR:-default}``): a shell-style reference some configs expect
substituted; here it would stay literal text."""

RUN_NAMES = frozenset(
    {"pipe_result", "has_failed", "has_succeeded", "env", "runner", "trigger", "parent", "params"}
    # Open Ticket AI's spellings of the same.
    | {"get_pipe_result", "pipe_results", "get_env", "get_parent_param", "parent_params"}
)
"""What a pipe's templates see at run time (besides the engine's globals)."""
LOOP_NAMES = frozenset({"item", "loop"})
"""What they see besides inside a ``for_each`` pipe."""
LOAD_NAMES = frozenset({"env", "get_env"})
"""What the templates of services and triggers see (they render once, at load)."""


@dataclass(frozen=True)
class _Scope:
    """Where a pipe of one runner stands, for the checks of its templates."""

    runner: str
    ids: frozenset[str]
    finished: Mapping[int, frozenset[str]]
    """Per pipe config (by object id): the steps finished when it starts."""
    payload: bool
    """Whether the runner has an event trigger (its runs may have a payload)."""
    names: frozenset[str]

    def inside_loop(self) -> _Scope:
        return replace(self, names=self.names | LOOP_NAMES)


def templates_in(tree: Any) -> list[CompiledTemplate]:
    """Every compiled template in a params tree (or the template itself)."""
    found: list[CompiledTemplate] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, CompiledTemplate):
            found.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or Path(value).suffix != "" or value.startswith("~")


def _holds_template(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_template(v) for v in value)
    return is_template(value)
