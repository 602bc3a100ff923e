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
    "STEP_FUNCTIONS",
    "CompiledTemplate",
    "EnvVars",
    "FailRequested",
    "RenderTree",
    "TemplateEngine",
    "TemplateNames",
    "at_path",
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


STEP_FUNCTIONS = frozenset({"pipe_result", "get_pipe_result", "has_failed", "has_succeeded"})
"""The template functions that name an earlier step by its id."""


class EnvVars(dict[str, str]):
    """The environment variables templates see as ``env``. One that is not set reads as an
    undefined value that says so (``env.X | default('y')`` still works), instead of
    ``'dict object' has no attribute 'X'``."""

    def __missing__(self, key: str) -> Any:
        return jinja2.StrictUndefined(hint=f"environment variable {key} is not set", name=key)


@dataclass(frozen=True)
class TemplateNames:
    """What a template reads, found in its syntax tree when it compiles (for the checks
    ``otai validate`` makes before anything runs)."""

    free: frozenset[str] = frozenset()
    """Names it reads that it does not set itself (``item``, ``pipe_result``, ``env``)."""
    steps: tuple[tuple[str, str], ...] = ()
    """``(function, step id)`` for each ``pipe_result('id')``, ``has_failed('id')``, ...
    whose id is a literal string (and that gives no ``default`` for a missing step)."""
    env: frozenset[str] = frozenset()
    """The environment variables it reads by name (``env.X``, ``env['X']``)."""
    payload: bool = False
    """Whether it reads ``trigger.payload``."""


def _names_of(tree: nodes.Template) -> TemplateNames:
    loaded: set[str] = set()
    stored: set[str] = set()
    for name in tree.find_all(nodes.Name):
        (loaded if name.ctx == "load" else stored).add(name.name)
    steps = tuple(
        (call.node.name, call.args[0].value)
        for call in tree.find_all(nodes.Call)
        if isinstance(call.node, nodes.Name)
        and call.node.name in STEP_FUNCTIONS
        and call.args
        and isinstance(call.args[0], nodes.Const)
        and isinstance(call.args[0].value, str)
        and not _has_default(call)
    )
    env: set[str] = set()
    payload = False
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        key: Any = None
        if isinstance(node, nodes.Getattr):
            target, key = node.node, node.attr
        elif isinstance(node, nodes.Getitem):
            target = node.node
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        else:
            continue
        if not isinstance(target, nodes.Name):
            continue
        if target.name == "env" and isinstance(key, str) and not hasattr(dict, key):
            env.add(key)
        elif target.name == "trigger" and key == "payload":
            payload = True
    return TemplateNames(frozenset(loaded - stored), steps, frozenset(env), payload)


def _has_default(call: nodes.Call) -> bool:
    """``pipe_result('x', default=...)`` (or its third argument) expects 'x' may be absent."""
    return len(call.args) >= 3 or any(kw.key == "default" for kw in call.kwargs)


def at_path(value: Any, path: str | int) -> Any:
    """``value`` followed along ``path`` (``'ticket.queue.name'``, ``'items.0.id'``): keys of
    mappings, indexes of lists (the function and filter Open Ticket AI templates use)."""
    current = value
    for part in str(path).split(".") if str(path) else ():
        if isinstance(current, Mapping):
            if part not in current:
                raise TemplateError(f"at_path: no {part!r} in {str(path)!r}")
            current = current[part]
        elif isinstance(current, list | tuple) and part.lstrip("-").isdigit():
            try:
                current = current[int(part)]
            except IndexError:
                raise TemplateError(f"at_path: no item {part} in {str(path)!r}") from None
        else:
            raise TemplateError(
                f"at_path: {type(current).__name__} has no {part!r} (in {str(path)!r})"
            )
    return current


def is_template(value: object) -> bool:
    """True for a string that holds Jinja syntax."""
    return isinstance(value, str) and any(marker in value for marker in _MARKERS)


def truthy(value: object) -> bool:
    """The `if:` rule: false, "false", 0, "", none (and "0", "no", "off") mean false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "none", "null")
    return bool(value)


MAX_VALUE_SIZE = 10_000_000
"""The most characters (or items) one ``*`` may make, and one rendered value may have."""
MAX_INT_BITS = 100_000
"""The largest integer ``*`` and ``**`` may make (about 30,000 digits)."""


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` bounded: ``'a' * 10**9`` and
    ``10 ** (10 ** 9)`` are refused instead of taking a gigabyte or hanging the loop. Being
    intercepted, these operators are never folded into constants at compile time either,
    so ``otai validate`` never evaluates them."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
            return left**right
        _check_product(left, right)
        return left * right


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if max(_bits(base), 1) * exponent > MAX_INT_BITS and abs(base) > 1:
            raise jinja2.exceptions.SecurityError(
                f"{base} ** {exponent} would be too large (at most {MAX_INT_BITS} bits)"
            )
    elif isinstance(exponent, float | int) and abs(exponent) > 10_000:
        raise jinja2.exceptions.SecurityError(f"the exponent {exponent} is too large")


def _check_product(left: Any, right: Any) -> None:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            if len(sequence) * count > MAX_VALUE_SIZE:
                raise jinja2.exceptions.SecurityError(
                    f"repeating {len(sequence)} items {count} times would make more than "
                    f"{MAX_VALUE_SIZE:,}"
                )
            return
    if _bits(left) + _bits(right) > MAX_INT_BITS:
        raise jinja2.exceptions.SecurityError(
            f"the product would be too large (at most {MAX_INT_BITS} bits)"
        )


class TemplateEngine:
    """Owns the sandboxed environment; compiles templates for one config.

    The sandbox is the immutable one: a template can read a step's data but never change it
    (``pipe_result('fetch').append(1)`` is blocked)."""

    def __init__(self) -> None:
        self.environment = _BoundedSandbox(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self.environment.globals.update(now=_now, fail=_fail, at_path=at_path)
        self.environment.filters["at_path"] = at_path
        self._flat_globals: dict[str, Any] | None = None

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
                # The expression's template: its code assigns the value to ``result``.
                render = self._renderer(expression._template, native=True)
            else:
                render = self._renderer(self.environment.from_string(source), native=False)
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
            source=source,
            path=path,
            native=native,
            _render=render,
            loc=loc,
            calls=calls,
            names=_names_of(tree),
        )

    @property
    def globals(self) -> frozenset[str]:
        """The names every template sees (``now``, ``fail``, ``range``, ...)."""
        return frozenset(self.environment.globals)

    def _renderer(
        self, template: jinja2.Template, *, native: bool
    ) -> Callable[[Mapping[str, Any]], Any]:
        """The function that renders ``template`` against a context.

        What ``Template.render`` and a compiled expression's call do, without their cost
        per render: Jinja copies its globals out of a ``ChainMap`` into each new context
        (and the context once more), which took a third of a templated run. Here the
        globals are one plain dict, made once per environment (no template of ours has
        globals of its own and the environment's are fixed at its start), and a render
        makes one dict: the globals with the context over them, as Jinja's own does."""
        environment = self.environment
        flat = self._flat_globals
        if flat is None or flat.keys() != environment.globals.keys():
            flat = self._flat_globals = dict(environment.globals)
        make = environment.context_class
        name, blocks, root = template.name, template.blocks, template.root_render_func
        if native:

            def render_value(ctx: Mapping[str, Any]) -> Any:
                context = make(environment, {**flat, **ctx}, name, blocks)
                for _ in root(context):
                    pass
                return context.vars["result"]

            return render_value
        concat = environment.concat

        def render_text(ctx: Mapping[str, Any]) -> Any:
            return concat(root(make(environment, {**flat, **ctx}, name, blocks)))

        return render_text

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
    names: TemplateNames = TemplateNames()
    """What the template reads (see :class:`TemplateNames`)."""

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
        if isinstance(value, str | list) and len(value) > MAX_VALUE_SIZE:
            unit = "characters" if isinstance(value, str) else "items"
            raise TemplateError(
                f"the rendered value has {len(value):,} {unit}, more than "
                f"{MAX_VALUE_SIZE:,}, in {self.source[:80]!r}",
                self.path,
            )
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
