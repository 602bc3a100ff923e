"""The JSON Schema of the config file, as ``otai schema`` prints it for editors.

It is derived from the config models and from the ``Params`` model of every component the
registry knows, with three additions the models alone do not give:

- Where a before-validator takes more than the field's type (``on: every_2s``,
  ``depends_on: select``, ``ledger: false``, ``priority: very high``...), the schema takes
  it too. The validators of the built-ins are described one by one; a validator it does not
  know (a plugin's) leaves its field open to any value, marked with a ``$comment``.
- ``use:`` offers every registered short name of the right kind (still taking any other
  string: a plugin's ``module:Class``), and ``params`` of a known component is described by
  its ``Params`` schema (an ``if``/``then`` on ``use``).
- A param may hold a Jinja template instead of its value: it is checked when it renders.

The config's root may take any of the loader's three forms (see
:mod:`open_ticket_ai.core.config.loader`).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import CoreSchema, core_schema

from open_ticket_ai.core.component import Component
from open_ticket_ai.core.config.models import (
    DEFAULT_PIPE,
    DEFAULT_TRIGGER,
    AppConfig,
    OrchestratorConfig,
    PipeConfig,
    RunnerDefinition,
    ServiceDefinition,
    TriggerDefinition,
)
from open_ticket_ai.core.config.upstream import ROOT_ALIASES
from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.registry import MODULE_ALIASES, Registry
from open_ticket_ai.core.services import Service
from open_ticket_ai.core.triggers.base import Trigger
from open_ticket_ai.errors import ComponentError
from open_ticket_ai.tickets.models import Priority

__all__ = ["DIALECT", "OPEN_COMMENT", "config_schema", "schema_registry"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"

OPEN_COMMENT = "open: a validator the schema does not know may take more than this"
"""The start of the ``$comment`` on a field left open to any value (see the module doc)."""

TEMPLATE_DEF = "jinja-template"
"""The ``$defs`` entry of a value holding a template (no class can have this name)."""

_TEMPLATE_REF = {"$ref": f"#/$defs/{TEMPLATE_DEF}"}
_NOTES = ("title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly")
_KINDS: tuple[tuple[str, type[Any]], ...] = (
    ("pipe", Pipe),
    ("trigger", Trigger),
    ("service", Service),
)

_log = logging.getLogger("open_ticket_ai.schema")


# -- what before-validators take -------------------------------------------------------------


def _caseless(text: str) -> str:
    """A regex matching ``text`` in any case (JSON Schema's regexes have no flags)."""
    return "".join(
        f"[{c.upper()}{c.lower()}]" if c.upper() != c.lower() else re.escape(c) for c in text
    )


def _priority_text() -> JsonSchemaValue:
    """A priority as :meth:`Priority.parse` reads text: ``"3"``, ``"high"``, ``"Very-High"``."""
    words = "|".join(
        "[ _-]".join(_caseless(word) for word in member.name.split("_")) for member in Priority
    )
    digits = "|".join(str(member.value) for member in Priority)
    return {"type": "string", "pattern": rf"^\s*(?:0*(?:{digits})|{words})\s*$"}


def _priority(inner: JsonSchemaValue) -> JsonSchemaValue:
    labels = [member.name.lower().replace("_", " ") for member in Priority]
    return {"anyOf": [inner, {"enum": labels}, _priority_text()]}


def _priority_keys(inner: JsonSchemaValue) -> JsonSchemaValue:
    return {**inner, "propertyNames": _priority_text()}


def _one_or_list(inner: JsonSchemaValue) -> JsonSchemaValue:
    """``x`` for ``[x]``."""
    if "items" not in inner:
        return _open(inner, "one item or a list")
    return {"anyOf": [inner["items"], inner]}


def _or(*extra: JsonSchemaValue) -> Callable[[JsonSchemaValue], JsonSchemaValue]:
    def widen(inner: JsonSchemaValue) -> JsonSchemaValue:
        return {"anyOf": [*_options(inner), *extra]}

    return widen


def _triggers(inner: JsonSchemaValue) -> JsonSchemaValue:
    """``on``: one trigger or a list, each a definition or (a string) the id of one."""
    reference = {"type": "string", "minLength": 1, "description": "the id of a trigger"}
    item = {"anyOf": [inner["items"], reference]}
    return {"anyOf": [{"type": "null"}, item, {"type": "array", "items": item}]}


def _not_empty(inner: JsonSchemaValue) -> JsonSchemaValue:
    return {**inner, "not": {"const": ""}}


def _header_values(inner: JsonSchemaValue) -> JsonSchemaValue:
    """Numbers and booleans are sent as their text."""
    return {**inner, "additionalProperties": {"type": ["string", "number", "boolean"]}}


def _caseless_enum(inner: JsonSchemaValue) -> JsonSchemaValue:
    values = [v for v in inner.get("enum", []) if isinstance(v, str)]
    if not values:
        return _open(inner, "a case-insensitive value")
    pattern = "^(?:" + "|".join(_caseless(v) for v in values) + ")$"
    return {"anyOf": [inner, {"type": "string", "pattern": pattern}]}


_DURATION_OR_TRUE = [
    {"type": "boolean"},
    {"type": "number", "minimum": 0, "description": "seconds"},
    {"type": "string", "description": "'500ms', '30s', '5m', '1h30m' or 'PT5M'"},
]

_WIDENINGS: dict[str, Callable[[JsonSchemaValue], JsonSchemaValue]] = {
    "open_ticket_ai.core.config.models._one_or_many": _one_or_list,
    "open_ticket_ai.core.config.models.PipeConfig._null_params": _or({"type": "null"}),
    "open_ticket_ai.core.config.models.RunnerDefinition._triggers": _triggers,
    "open_ticket_ai.core.config.models.RunnerDefinition._no_deadline": _or({"const": False}),
    "open_ticket_ai.core.config.models.OrchestratorConfig._state_switch": _not_empty,
    "open_ticket_ai.core.config.models.OrchestratorConfig._ledger_switch": _or(
        {"type": "boolean"}, {"type": "null"}
    ),
    "open_ticket_ai.tickets.models.parse_priority": _priority,
    "open_ticket_ai.tickets.pipes._priority_or_named": _priority,
    "open_ticket_ai.tickets.adapters.conventions.parse_priority_map": _priority_keys,
    "open_ticket_ai.tickets.pipes._ticket_id": _or(
        {"type": "integer"},
        {"type": "object", "required": ["id"], "description": "a ticket: its id is taken"},
    ),
    "open_ticket_ai.classification.classify_pipe.ClassifyParams._id_text": _or({"type": "integer"}),
    "open_ticket_ai.base.pipes.http_request_pipe.HttpRequestParams._upper": _caseless_enum,
    "open_ticket_ai.base.pipes.http_request_pipe.HttpRequestParams._headers_as_text": (
        _header_values
    ),
    "open_ticket_ai.base.pipes.http_request_pipe.HttpRequestParams._one_or_many": _or(
        {"type": "integer"}
    ),
    "open_ticket_ai.base.triggers.interval_trigger.IntervalParams._spread": (
        lambda inner: {"anyOf": _DURATION_OR_TRUE}
    ),
}
"""What each built-in before-validator takes, given the schema of what it hands on."""


def _name_of(function: Any) -> str:
    function = getattr(function, "__func__", function)
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def _open(inner: JsonSchemaValue, what: str) -> JsonSchemaValue:
    """Any value, still offering ``inner``'s completions."""
    return {"anyOf": [inner, {}], "$comment": f"{OPEN_COMMENT} ({what})"}


def _options(schema: JsonSchemaValue) -> list[JsonSchemaValue]:
    """The alternatives of a schema: its ``anyOf`` when it is only that, else itself."""
    if set(schema) == {"anyOf"}:
        return list(schema["anyOf"])
    return [schema]


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, taking what before-validators and field names take too."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        return self._widened(schema, super().function_before_schema(schema))

    def function_wrap_schema(
        self, schema: core_schema.WrapValidatorFunctionSchema
    ) -> JsonSchemaValue:
        return self._widened(schema, super().function_wrap_schema(schema))

    def handle_invalid_for_json_schema(
        self, schema: CoreSchema | Any, error_info: str
    ) -> JsonSchemaValue:
        # A type with no JSON form (a callable, a plain validator): any value may do.
        return {"$comment": f"{OPEN_COMMENT} ({error_info})"}

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        cls = schema["cls"]
        config = cls.model_config
        _field_bounds(json_schema, cls)
        if config.get("populate_by_name") or config.get("validate_by_name"):
            _by_field_name(json_schema, cls)
        return json_schema

    @staticmethod
    def _widened(schema: Any, inner: JsonSchemaValue) -> JsonSchemaValue:
        if schema.get("json_schema_input_schema") is not None:
            return inner  # the validator says itself what it takes
        name = _name_of(schema["function"]["function"])
        widen = _WIDENINGS.get(name)
        return widen(inner) if widen is not None else _open(inner, name)


def _field_bounds(json_schema: JsonSchemaValue, cls: type[BaseModel]) -> None:
    """A field's bounds (``gt=0``) on the numbers it may be: pydantic drops them from a type
    that gives its own JSON schema, such as a duration."""
    properties = json_schema.get("properties", {})
    for name, info in cls.model_fields.items():
        key = info.alias or name
        bounds = {
            bound: getattr(meta, bound)
            for meta in info.metadata
            for bound in _BOUNDS
            if isinstance(meta, annotated_types.BaseMetadata) and hasattr(meta, bound)
        }
        if bounds and isinstance(properties.get(key), dict):
            properties[key] = copy.deepcopy(properties[key])
            _bounds_on_numbers(properties[key], bounds)


def _by_field_name(json_schema: JsonSchemaValue, cls: type[BaseModel]) -> None:
    """A model that populates by name takes ``if_`` as well as its alias ``if``: the name is
    accepted (as a pattern property, so that editors offer only the alias)."""
    properties = json_schema.get("properties", {})
    for name, info in cls.model_fields.items():
        alias = info.alias
        if not alias or alias == name or alias not in properties:
            continue
        json_schema.setdefault("patternProperties", {})[f"^{re.escape(name)}$"] = properties[alias]
        required = json_schema.get("required", [])
        if alias in required:
            required.remove(alias)
            json_schema.setdefault("allOf", []).append(
                {"anyOf": [{"required": [alias]}, {"required": [name]}]}
            )


# -- components ------------------------------------------------------------------------------


@dataclass
class _Known:
    """A component class the registry knows, and every way ``use:`` may name it."""

    cls: type[Component[Any]]
    kind: str
    short_names: list[str] = field(default_factory=list)
    spellings: list[str] = field(default_factory=list)


def schema_registry() -> Registry:
    """The registry with installed plugins; the built-ins alone when a plugin fails to load."""
    try:
        return Registry()
    except ComponentError as exc:
        _log.warning("%s; the schema describes the built-in components only", exc)
        return Registry(load_entry_points=False)


def _known(registry: Registry) -> list[_Known]:
    found: dict[type[Component[Any]], _Known] = {}
    for name in registry.short_names:
        try:
            cls = registry.resolve(name, Component)
        except ComponentError as exc:
            _log.warning("the schema leaves out %r: %s", name, exc)
            continue
        kind = next((label for label, base in _KINDS if issubclass(cls, base)), None)
        if kind is None:
            continue
        found.setdefault(cls, _Known(cls, kind)).short_names.append(name)
    for known in found.values():
        known.spellings = [*known.short_names, *_spellings(registry, known.cls)]
    return list(found.values())


def _spellings(registry: Registry, cls: type[Component[Any]]) -> list[str]:
    """``module:Class`` and ``module.Class`` of ``cls`` (and of its module's old names)."""
    modules = [
        cls.__module__,
        *(old for old, new in MODULE_ALIASES.items() if new == cls.__module__),
    ]
    candidates = [f"{module}:{cls.__qualname__}" for module in modules]
    if "." not in cls.__qualname__:
        candidates += [f"{module}.{cls.__qualname__}" for module in modules]
    spellings = []
    for spelling in candidates:
        try:
            if registry.resolve(spelling, Component) is cls:
                spellings.append(spelling)
        except ComponentError:
            continue
    return spellings


def _summary(cls: type[Any]) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _schemable(model: type[BaseModel]) -> bool:
    try:
        model.model_json_schema(by_alias=True, schema_generator=_Generator)
    except Exception as exc:  # a plugin's model pydantic cannot describe
        _log.warning("the schema leaves out the params of %s: %s", model.__qualname__, exc)
        return False
    return True


# -- the document ----------------------------------------------------------------------------


def config_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, knowing ``registry``'s components
    (default: the built-ins and installed plugins)."""
    known = _known(registry or schema_registry())
    params: list[type[BaseModel]] = []
    for component in known:
        if component.cls.Params not in params and _schemable(component.cls.Params):
            params.append(component.cls.Params)
    core: list[type[BaseModel]] = [
        AppConfig,
        OrchestratorConfig,
        RunnerDefinition,
        PipeConfig,
        TriggerDefinition,
        ServiceDefinition,
    ]
    models: list[type[BaseModel]] = [*core, *(model for model in params if model not in core)]
    refs, top = models_json_schema(
        [(model, _MODE) for model in models], by_alias=True, schema_generator=_Generator
    )
    defs: dict[str, Any] = json.loads(json.dumps(top["$defs"]))  # no value shared

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": refs[(model, _MODE)]["$ref"]}

    def definition(model: type[BaseModel]) -> dict[str, Any]:
        name: str = refs[(model, _MODE)]["$ref"].removeprefix("#/$defs/")
        found: dict[str, Any] = defs[name]
        return found

    for schema in defs.values():
        _bounds_on_numbers(schema)
    plugins = definition(AppConfig).get("properties", {}).get("plugins")
    if isinstance(plugins, dict) and "items" in plugins:
        # A distribution the config expects, as Open Ticket AI configs list them.
        plugins["items"] = {
            "anyOf": [
                plugins["items"],
                {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                    "required": ["name"],
                },
            ]
        }
    for model in params:
        _templates_allowed(definition(model))
    defs[TEMPLATE_DEF] = _TEMPLATE_SCHEMA

    def params_of(component: _Known, *, nullable: bool) -> JsonSchemaValue:
        if component.cls.Params not in params:
            return {}
        schema = ref(component.cls.Params)
        return {"anyOf": [schema, {"type": "null"}]} if nullable else schema

    for kind, model, default, nullable in (
        ("pipe", PipeConfig, DEFAULT_PIPE, True),
        ("trigger", TriggerDefinition, DEFAULT_TRIGGER, True),
        ("service", ServiceDefinition, None, False),
    ):
        target = definition(model)
        of_kind = [component for component in known if component.kind == kind]
        target["properties"]["use"] = _offer(target["properties"]["use"], of_kind, kind)
        rules = [
            {
                "if": {"properties": {"use": {"enum": component.spellings}}, "required": ["use"]},
                "then": {"properties": {"params": params_of(component, nullable=nullable)}},
            }
            for component in of_kind
            if component.cls.Params in params
        ]
        fallback = next((c for c in of_kind if default in c.short_names), None)
        if fallback is not None and fallback.cls.Params in params:
            # No `use`: a pipe is a CompositePipe; a trigger with params an IntervalTrigger
            # (`use: null` too).
            unnamed = (
                {"not": {"required": ["use"]}}
                if kind == "pipe"
                else {"properties": {"use": {"type": "null"}}}
            )
            rules.append(
                {
                    "if": unnamed,
                    "then": {"properties": {"params": params_of(fallback, nullable=nullable)}},
                }
            )
        if rules:
            target.setdefault("allOf", []).extend(rules)

    return {
        "$schema": DIALECT,
        "title": "open-ticket-ai config",
        "description": "A config file in any of its root forms: `open_ticket_ai:` wrapping "
        "the config, the config itself (`orchestrator:`, `services:`, `plugins:`), or a bare "
        "`runners:` list with the orchestrator's settings beside it.",
        "anyOf": [
            {
                "type": "object",
                "properties": {"open_ticket_ai": {"anyOf": [ref(AppConfig), {"type": "null"}]}},
                "required": ["open_ticket_ai"],
                "additionalProperties": False,
            },
            ref(AppConfig),
            {**ref(OrchestratorConfig), "required": ["runners"]},
            *_upstream_roots(),
        ],
        "$defs": defs,
    }


def _upstream_roots() -> list[JsonSchemaValue]:
    """Open Ticket AI's formats, which are translated when read (their parts are checked
    then): one root key holding ``api_version``, ``services`` as a mapping, or the
    orchestrator written as a pipe (1.1+); ``infrastructure`` or ``orchestrator.defaults``
    (1.0)."""
    marks: list[JsonSchemaValue] = [
        {"required": ["api_version"]},
        {"required": ["services"], "properties": {"services": {"type": "object"}}},
        {"required": ["orchestrator"], "properties": {"orchestrator": {"required": ["use"]}}},
        {"required": ["infrastructure"]},
        {"required": ["orchestrator"], "properties": {"orchestrator": {"required": ["defaults"]}}},
    ]
    return [
        {
            "type": "object",
            "properties": {root: {"type": "object", "anyOf": marks}},
            "required": [root],
            "additionalProperties": False,
            "$comment": "Open Ticket AI's configuration format",
        }
        for root in ROOT_ALIASES
    ]


_MODE: JsonSchemaMode = "validation"

_TEMPLATE_SCHEMA: JsonSchemaValue = {
    "description": "A value holding a Jinja template ({{ }}, {% %} or {# #}): it is checked "
    "when it renders.",
    "anyOf": [
        {"type": "string", "pattern": r"\{\{|\{%|\{#"},
        {"type": "array", "contains": _TEMPLATE_REF},
        # An object with some value holding a template: not all of them free of one.
        {"type": "object", "not": {"additionalProperties": {"not": _TEMPLATE_REF}}},
    ],
}


_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
)


def _bounds_on_numbers(schema: JsonSchemaValue, bounds: dict[str, Any] | None = None) -> None:
    """Pydantic leaves a bound on a type that gives its own JSON schema (a duration) under
    its Python name, ``gt: 0``: it is put on the numbers that type may be, as JSON Schema
    says it (``exclusiveMinimum: 0``)."""
    found = {key: schema.pop(key) for key in list(schema) if key in _BOUNDS}
    bounds = {**(bounds or {}), **found}
    if bounds and schema.get("type") in ("number", "integer"):
        for key, value in bounds.items():
            schema.setdefault(_BOUNDS[key], value)
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():
                if isinstance(sub, dict):
                    _bounds_on_numbers(sub)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for sub in value:
                if isinstance(sub, dict):
                    _bounds_on_numbers(sub, bounds if key == "anyOf" else None)
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            _bounds_on_numbers(value)


def _templates_allowed(params: JsonSchemaValue) -> None:
    """Each param of a ``Params`` model may hold a template instead (pipes' params render
    before each run, triggers' and services' with ``env`` at load)."""
    for key in ("properties", "patternProperties"):
        for name, schema in params.get(key, {}).items():
            notes = {k: schema[k] for k in _NOTES if k in schema}
            rest = {k: v for k, v in schema.items() if k not in notes}
            if rest:  # (an empty one takes anything already)
                params[key][name] = {**notes, "anyOf": [*_options(rest), _TEMPLATE_REF]}


def _offer(use: JsonSchemaValue, components: Iterable[_Known], kind: str) -> JsonSchemaValue:
    """``use`` offering the short names of ``kind`` (with what each is), taking any string."""
    notes = {k: use[k] for k in _NOTES if k in use}
    rest = {k: v for k, v in use.items() if k not in notes}
    names = sorted(
        ((name, component.cls) for component in components for name in component.short_names),
        key=lambda pair: pair[0],
    )
    notes.setdefault(
        "description",
        f"The {kind}: a short name of a built-in or an installed plugin, or 'module:Class'.",
    )
    offered = [
        {"const": name, **({"description": text} if (text := _summary(cls)) else {})}
        for name, cls in names
    ]
    return {**notes, "anyOf": [*offered, *_options(rest)]}
