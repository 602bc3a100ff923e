"""The one sandboxed Jinja environment, compiled templates, and rendering of param trees.

Templates compile once when the config loads and render just before their pipe runs. A
template that is exactly one expression (``"{{ 6*7 }}"``) renders to the native value; any
other renders to a string. Rendered values are never rendered again, so data from outside
(a ticket, an HTTP response) stays literal text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from open_ticket_ai.errors import PipeError, TemplateError

__all__ = [
    "CompiledTemplate",
    "FailRequested",
    "RenderTree",
    "TemplateEngine",
    "compile_tree",
    "is_template",
    "render_tree",
    "truthy",
]

_MARKERS = ("{{", "{%", "{#")

Loc = tuple[str | int, ...]
"""A place in the config, as a path of keys and indexes."""


class FailRequested(TemplateError, PipeError):
    """Raised by ``fail("why")`` in a template: the pipe fails with that message.

    It is a TemplateError too, so a ``fail()`` in a load-time template (a trigger's or a
    service's params) is reported as a config problem rather than escaping as a traceback."""


def _fail(message: str = "failed") -> NoReturn:
    raise FailRequested(str(message))


def _now() -> datetime:
    return datetime.now(UTC)


def is_template(value: object) -> bool:
    """True for a string that holds Jinja syntax."""
    return isinstance(value, str) and any(marker in value for marker in _MARKERS)


def truthy(value: object) -> bool:
    """The `if:` rule: false, "false", 0, "", none (and "0", "no", "off") mean false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "none", "null")
    return bool(value)


class TemplateEngine:
    """Owns the sandboxed environment; compiles templates for one config.

    The sandbox is the immutable one: a template can read a step's data but never change it
    (``pipe_result('fetch').append(1)`` is blocked)."""

    def __init__(self) -> None:
        self.environment = ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self.environment.globals.update(now=_now, fail=_fail)

    def compile(self, source: str, path: str, loc: Loc = ()) -> CompiledTemplate:
        """Compile ``source``; raise TemplateError naming ``path`` on a syntax error.

        ``loc`` is the template's place in the config, set as ``loc`` on render errors."""
        try:
            tree = self.environment.parse(source)
            native = _is_single_expression(tree)
            if native:
                expression = self.environment.compile_expression(
                    self._expression_source(source), undefined_to_none=False
                )
                render: Callable[[Mapping[str, Any]], Any] = lambda ctx: expression(**ctx)  # noqa: E731
            else:
                template = self.environment.from_string(source)
                render = template.render
        except jinja2.TemplateSyntaxError as exc:
            error = TemplateError(f"template syntax error: {exc.message} in {source!r}", path)
            error.loc = loc
            raise error from None
        calls = frozenset(
            call.node.name
            for call in tree.find_all(nodes.Call)
            if isinstance(call.node, nodes.Name)
        )
        return CompiledTemplate(
            source=source, path=path, native=native, _render=render, loc=loc, calls=calls
        )

    def _expression_source(self, source: str) -> str:
        """The text inside the one ``{{ }}`` of a single-expression template (comments and
        whitespace control around it allowed)."""
        inside: list[str] = []
        depth = 0
        for _, token, value in self.environment.lex(source):
            if token == "variable_begin":
                depth += 1
            elif token == "variable_end":
                depth -= 1
            elif depth:
                inside.append(value)
        return "".join(inside)


def _is_single_expression(tree: nodes.Template) -> bool:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return False
    parts = tree.body[0].nodes
    return len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData)


@dataclass(frozen=True, eq=False)
class CompiledTemplate:
    """A template compiled once; :meth:`render` evaluates it against a context."""

    source: str
    path: str
    native: bool
    _render: Callable[[Mapping[str, Any]], Any]
    loc: Loc = ()
    """Where the template stands in the config; render errors carry it as their ``loc``."""
    calls: frozenset[str] = frozenset()
    """The names the template calls (``has_failed``, ``pipe_result``, ...)."""

    def render(self, context: Mapping[str, Any]) -> Any:
        """The rendered value; a failure raises TemplateError naming the template's path."""
        try:
            return self._render_checked(context)
        except TemplateError as exc:  # FailRequested too: it keeps its message as it is
            exc.loc = self.loc
            raise

    def _render_checked(self, context: Mapping[str, Any]) -> Any:
        try:
            value = self._render(context)
            if isinstance(value, jinja2.Undefined):
                # Raises the undefined's own error: UndefinedError, or SecurityError for an
                # attribute the sandbox blocked (``{{ ''.__class__ }}``).
                str(value)
        except FailRequested:
            raise
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{exc.message} in {self.source!r}", self.path) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"blocked by the sandbox: {exc}", self.path) from None
        except TemplateError as exc:
            raise TemplateError(exc.reason, self.path) from None
        except Exception as exc:
            raise TemplateError(
                f"{type(exc).__name__}: {exc} in {self.source!r}", self.path
            ) from None
        if isinstance(value, jinja2.Undefined):  # an Undefined whose str() does not raise
            hint = value._undefined_name or "value"
            raise TemplateError(f"{hint!r} is undefined in {self.source!r}", self.path)
        return value


RenderTree = Any
"""A param value with every template string replaced by its :class:`CompiledTemplate`."""


def compile_tree(
    engine: TemplateEngine, value: Any, loc: Loc, where: Callable[[Loc], str]
) -> tuple[RenderTree, bool]:
    """Compile every template string in ``value``; return the tree and whether it has any.

    ``where(loc)`` names a template's place for messages; a syntax error raises TemplateError
    with ``loc`` set to the failing string's location."""
    if is_template(value):
        return engine.compile(value, where(loc), loc), True
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        found = False
        for key, item in value.items():
            out[key], has = compile_tree(engine, item, (*loc, key), where)
            found = found or has
        return out, found
    if isinstance(value, list):
        items = [compile_tree(engine, item, (*loc, i), where) for i, item in enumerate(value)]
        return [item for item, _ in items], any(has for _, has in items)
    return value, False


def render_tree(tree: RenderTree, context: Mapping[str, Any]) -> Any:
    """Render a compiled tree; plain values come back as they are."""
    if isinstance(tree, CompiledTemplate):
        return tree.render(context)
    if isinstance(tree, dict):
        return {key: render_tree(item, context) for key, item in tree.items()}
    if isinstance(tree, list):
        return [render_tree(item, context) for item in tree]
    return tree
