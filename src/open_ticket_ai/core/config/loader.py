"""Finding and loading the config file, in any of its three root forms.

- ``open_ticket_ai:`` wrapping ``plugins``, ``services``, ``orchestrator``
- ``orchestrator:`` (with ``plugins``, ``services`` beside it) at the top
- a bare ``runners:`` list at the top
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError

from open_ticket_ai.core.config.models import (
    AppConfig,
    OrchestratorConfig,
    RunnerDefinition,
    ServiceDefinition,
)
from open_ticket_ai.core.config.upstream import Translation, is_upstream, translate
from open_ticket_ai.core.config.upstream_v10 import is_v10, translate_v10
from open_ticket_ai.core.config.validation import issues_of
from open_ticket_ai.core.config.yaml_source import ConfigPath, SourceMap, format_path, load_yaml
from open_ticket_ai.core.memory import paused_gc
from open_ticket_ai.errors import ConfigError, Problem

__all__ = [
    "ENV_VAR",
    "LoadedConfig",
    "find_config",
    "load_config",
    "parse_config",
    "translate_upstream",
]

ENV_VAR = "OTAI_CONFIG"
DEFAULT_FILE = "config.yml"
_APP_KEYS = tuple(AppConfig.model_fields)


@dataclass(frozen=True)
class LoadedConfig:
    """A structurally valid config with the means to point back into its file."""

    config: AppConfig
    source: SourceMap
    prefix: ConfigPath
    """Where the app config sits in the file: ``("open_ticket_ai",)``, ``()``, or
    ``("<bare>",)`` for a bare runners list (whose ``orchestrator`` is the file's root)."""
    problems: tuple[Problem, ...] = ()
    """Structural problems; when there are any, ``config`` holds only the valid parts."""
    runner_paths: tuple[ConfigPath, ...] = ()
    """The path of each of ``config.orchestrator.runners`` (invalid runners are left out)."""
    service_paths: tuple[ConfigPath, ...] = ()
    dotenv: Mapping[str, str] = field(default_factory=dict)
    """The variables of the ``.env`` file beside the config (the environment wins over it)."""
    notices: tuple[str, ...] = ()
    """How the file was read when not in this project's own format (logged at INFO)."""

    def file_path(self, path: ConfigPath) -> ConfigPath:
        """Translate a path in :class:`AppConfig` to the path as written in the file."""
        if self.prefix == _BARE:
            return path[1:] if path[:1] == ("orchestrator",) else path
        return (*self.prefix, *path)

    def problem(self, message: str, path: ConfigPath, *, key: bool = False) -> Problem:
        return self.source.problem(message, self.file_path(path), key=key)

    def where(self, path: ConfigPath) -> str:
        """``"config.yml:14 orchestrator.runners[0].run"`` for messages raised at run time."""
        in_file = self.file_path(path)
        line = self.source.line_of(in_file)
        head = f"{self.source.file}:{line}" if line else str(self.source.file)
        text = format_path(in_file)
        return f"{head} {text}" if text else head


_BARE: ConfigPath = ("<bare>",)


def find_config(argument: str | os.PathLike[str] | None = None) -> Path:
    """The config path: the argument, else ``$OTAI_CONFIG``, else ``./config.yml``."""
    if argument:
        return Path(argument)
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_FILE)


def load_config(argument: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """Read and structurally validate the config file.

    A missing file or broken YAML raises ConfigError; structural problems are kept in
    ``problems`` so that :func:`open_ticket_ai.build` reports them with every other one."""
    path = find_config(argument)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "" if argument else f" (give a path, or set {ENV_VAR})"
        raise ConfigError([Problem(f"config file not found{hint}", file=str(path))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(f"cannot read config file: {exc}", file=str(path))]) from None
    dotenv = _dotenv(path.parent / ".env")
    loaded = parse_config(text, str(path), environ={**dotenv, **os.environ})
    return dataclasses.replace(loaded, dotenv=dotenv)


def _dotenv(path: Path) -> dict[str, str]:
    """The variables a ``.env`` file sets (none when there is no file)."""
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def parse_config(
    text: str, file: str = DEFAULT_FILE, *, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Structurally validate config text (``file`` names it in messages). Variables of
    ``environ`` (default: the environment) named ``OTAI_A__B__C`` set the config's value at
    ``a.b.c`` first (see :func:`apply_overrides`)."""
    with paused_gc():
        return _parse(text, file, os.environ if environ is None else environ)


def _parse(text: str, file: str, environ: Mapping[str, str]) -> LoadedConfig:
    duplicates: list[Problem] = []
    data, source = load_yaml(text, file, duplicates=duplicates)
    apply_overrides(data, environ)
    translation = translate_upstream(data, source)
    notices = tuple(translation.notices) if translation is not None else ()
    if translation is not None:
        duplicates += [source.problem(message, path) for message, path in translation.problems]
    app_data, prefix, problems = _root_form(data, source)
    problems = [*duplicates, *problems]
    if isinstance(app_data, dict) and isinstance(app_data.get("plugins"), list):
        found, noted, wrong = expected_distributions(app_data["plugins"])
        app_data["plugins"] = [entry for entry in app_data["plugins"] if entry not in found]
        notices = (*notices, *noted)
        problems += [source.problem(text, (*prefix, "plugins", index)) for index, text in wrong]
    try:
        config = AppConfig.model_validate(app_data)
    except ValidationError as exc:
        holder = LoadedConfig(AppConfig(), source, prefix)
        for issue in issues_of(exc, AppConfig):
            problems.append(holder.problem(issue.message, issue.loc, key=issue.at_key))
        return dataclasses.replace(
            _valid_parts(app_data, source, prefix, problems), notices=notices
        )
    return dataclasses.replace(_loaded(config, source, prefix, problems), notices=notices)


def _loaded(
    config: AppConfig, source: SourceMap, prefix: ConfigPath, problems: list[Problem]
) -> LoadedConfig:
    return LoadedConfig(
        config,
        source,
        prefix,
        tuple(problems),
        tuple(("orchestrator", "runners", i) for i in range(len(config.orchestrator.runners))),
        tuple(("services", i) for i in range(len(config.services))),
    )


BUILT_IN_DISTRIBUTIONS = frozenset(
    {"otai-base", "otai-otobo-znuny", "otai-hf-local", "otai-zammad", "open-ticket-ai"}
)
"""Open Ticket AI's plugin distributions: what they bring is built in here."""


def expected_distributions(
    entries: list[Any],
) -> tuple[list[Any], list[str], list[tuple[int, str]]]:
    """The entries of ``plugins:`` that name distributions rather than modules (``{name,
    version}``, or a name with a ``-``), each checked against what is installed: those
    entries, the notices, and per index what is wrong."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    found: list[Any] = []
    noted: list[str] = []
    wrong: list[tuple[int, str]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name, wanted = entry["name"], str(entry.get("version") or "")
        elif isinstance(entry, str) and "-" in entry:
            name, wanted = entry, ""
        else:
            continue
        found.append(entry)
        if name.lower() in BUILT_IN_DISTRIBUTIONS:
            noted.append(f"plugin {name}: what it brings is built in here")
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            wrong.append((index, f"the config expects the plugin {name!r}, which is not installed"))
            continue
        try:
            if wanted and installed not in SpecifierSet(wanted):
                wrong.append(
                    (index, f"the config expects {name} {wanted}; {installed} is installed")
                )
            else:
                noted.append(f"plugin {name} {installed}: installed")
        except InvalidSpecifier:
            wrong.append((index, f"{name}: {wanted!r} is not a version specifier (like '>=1.0')"))
    return found, noted, wrong


OVERRIDE_PREFIX = "OTAI_"


def apply_overrides(data: Any, environ: Mapping[str, str]) -> None:
    """Set config values from variables like ``OTAI_OPEN_TICKET_AI__SERVICES__DESK__PARAMS__
    PASSWORD``: after the prefix, the path of keys (case-insensitive) joined by ``__``; a
    list of items with ids (services, runners) is entered by the item's id (``-`` written
    ``_``). A variable whose path does not start at a top-level key of the config, or
    without ``__``, is no override (``OTAI_DEMO_DIR`` is a plain variable for templates)."""
    if not isinstance(data, dict):
        return
    for name, value in environ.items():
        if not name.startswith(OVERRIDE_PREFIX) or "__" not in name:
            continue
        path = name[len(OVERRIDE_PREFIX) :].lower().split("__")
        if "" not in path:
            _set_at(data, path, value)


def _set_at(data: dict[str, Any], path: list[str], value: str) -> None:
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, dict):
            key = next((k for k in node if _same(k, part)), None)
            if key is None:
                if depth == 0:
                    return  # not this config's: its top-level keys are others
                key = part
                if not last:
                    node[key] = {}
            if last:
                node[key] = value
                return
            node = node[key]
        elif isinstance(node, list):
            item = next(
                (i for i in node if isinstance(i, dict) and _same(str(i.get("id", "")), part)),
                None,
            )
            if item is None or last:
                return
            node = item
        else:
            return


def _same(key: Any, part: str) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") == part


def _valid_parts(
    app_data: Any, source: SourceMap, prefix: ConfigPath, problems: list[Problem]
) -> LoadedConfig:
    """The parts of an invalid config that are valid on their own, for further checks."""
    if not isinstance(app_data, dict):
        return LoadedConfig(AppConfig(), source, prefix, tuple(problems))
    orchestrator = app_data.get("orchestrator")
    runners = orchestrator.get("runners") if isinstance(orchestrator, dict) else None
    services = app_data.get("services")
    kept_runners = _valid_items(RunnerDefinition, runners, ("orchestrator", "runners"))
    kept_services = _valid_items(ServiceDefinition, services, ("services",))
    plugins = app_data.get("plugins")
    config = AppConfig.model_construct(
        plugins=plugins
        if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)
        else [],
        services=[item for item, _ in kept_services],
        orchestrator=OrchestratorConfig.model_construct(
            runners=[item for item, _ in kept_runners],
            max_concurrent_runs=None,
            shutdown_timeout=30.0,
        ),
        env_allowlist=[],
    )
    return LoadedConfig(
        config,
        source,
        prefix,
        tuple(problems),
        tuple(path for _, path in kept_runners),
        tuple(path for _, path in kept_services),
    )


M = TypeVar("M", bound=BaseModel)


def _valid_items(model: type[M], items: Any, path: ConfigPath) -> list[tuple[M, ConfigPath]]:
    if not isinstance(items, list):
        return []
    kept = []
    for i, item in enumerate(items):
        try:
            kept.append((model.model_validate(item), (*path, i)))
        except ValidationError:
            salvaged = _salvage(model, item)
            if salvaged is not None:
                kept.append((salvaged, (*path, i)))
    return kept


_DROPPABLE = frozenset({"retry", "timeout", "if", "depends_on"})
"""Pipe keys whose removal only removes checks (it never adds a problem)."""
_SALVAGE_ROUNDS = 5


def _salvage(model: type[M], item: Any) -> M | None:
    """``item`` without its unknown keys and its invalid droppable keys, validated, so that the
    rest of it is still checked (its problems are reported already); None if that fails."""
    data = copy.deepcopy(item)
    for _ in range(_SALVAGE_ROUNDS):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                if not _drop(data, tuple(error["loc"]), error["type"] == "extra_forbidden"):
                    return None
    return None


def _drop(data: Any, loc: tuple[str | int, ...], unknown: bool) -> bool:
    """Delete the key an error is about (an unknown key, or the droppable key holding the
    error); False when there is no such key to delete."""
    end = (
        len(loc)
        if unknown
        else next((n + 1 for n, part in enumerate(loc) if part in _DROPPABLE), 0)
    )
    if end == 0 or not isinstance(loc[end - 1], str):
        return False
    parent = data
    for part in loc[: end - 1]:
        if isinstance(parent, dict) and isinstance(part, str):
            if part not in parent:
                return True  # dropped already, with an ancestor, in this round
            parent = parent[part]
        elif isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
            parent = parent[part]
        else:
            return False
    if not isinstance(parent, dict):
        return False
    if end >= 3 and loc[end - 3] == "on" and set(parent) - {loc[end - 1]} <= {"id"}:
        return False  # a trigger left with its id alone would turn into a reference
    parent.pop(loc[end - 1], None)
    return True


def translate_upstream(data: Any, source: SourceMap) -> Translation | None:
    """Rewrite a document in one of Open Ticket AI's formats (1.0, 1.1+) into this project's,
    in place (see :mod:`open_ticket_ai.core.config.upstream`); None when it is in this
    project's format already."""
    if is_v10(data):
        return translate_v10(data, source)
    if is_upstream(data):
        return translate(data, source)
    return None


def _root_form(data: Any, source: SourceMap) -> tuple[Any, ConfigPath, list[Problem]]:
    if not isinstance(data, dict):
        return (
            {},
            (),
            [
                source.problem(
                    "the config must be a mapping with 'open_ticket_ai', 'orchestrator' or "
                    "'runners' at the top",
                    (),
                )
            ],
        )
    if "open_ticket_ai" in data:
        problems = [
            source.problem(f"unknown key {key!r} beside 'open_ticket_ai'", (key,), key=True)
            for key in data
            if key != "open_ticket_ai"
        ]
        inner = data["open_ticket_ai"]
        return ({} if inner is None else inner), ("open_ticket_ai",), problems
    if "runners" in data and not any(key in data for key in _APP_KEYS):
        return {"orchestrator": data}, _BARE, []
    return data, (), []
