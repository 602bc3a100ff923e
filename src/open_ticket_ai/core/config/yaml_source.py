"""YAML text -> plain data, remembering the line and column of every key and value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from open_ticket_ai.errors import ConfigError, Problem

__all__ = ["ConfigPath", "Position", "SourceMap", "format_path", "load_yaml"]

ConfigPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in the config file."""

    line: int
    column: int


class SourceMap:
    """Where each config path's key and value stand in the file.

    Positions are stored packed in one int each (see :func:`pack`): a large config has
    hundreds of thousands of them. A map from :func:`load_yaml` starts out knowing where each
    mapping and list starts, which is what a runtime location (``config.yml:14
    orchestrator.runners[0].run``) asks for; the first question about anything else (a
    scalar, a key, a problem to report) reads the text again, once, for every position. A
    config without mistakes is rarely asked one: the 10,000 runners of the set-up benchmark
    load in 0.29 s and 36 MB this way, 0.35 s and 68 MB with every position (and a cache of
    tags that outlived the load)."""

    __slots__ = ("_keys", "_text", "_values", "file")

    def __init__(
        self,
        file: str,
        values: dict[ConfigPath, int] | None = None,
        keys: dict[ConfigPath, int] | None = None,
    ) -> None:
        self.file = file
        self._values: dict[ConfigPath, int] = {} if values is None else values
        self._keys: dict[ConfigPath, int] = {} if keys is None else keys
        self._text: str | None = None
        """The text, while only the containers' positions are known (see the class)."""

    @property
    def values(self) -> dict[ConfigPath, int]:
        """Packed positions of the values, by path."""
        self._complete()
        return self._values

    @property
    def keys(self) -> dict[ConfigPath, int]:
        """Packed positions of the keys, by the path of their value."""
        self._complete()
        return self._keys

    def _complete(self) -> None:
        text = self._text
        if text is not None:
            _, every = _load(text, self.file, [], every_position=True)
            self._values, self._keys = every._values, every._keys
            self._text = None  # last: a thread asking meanwhile reads the text again itself

    def locate(self, path: ConfigPath, *, key: bool = False) -> Position | None:
        """Position of ``path`` (its key when ``key``), else of its nearest located ancestor."""
        self._complete()
        if key and path in self._keys:
            return unpack(self._keys[path])
        found = self._nearest(path)
        return unpack(found) if found is not None else None

    def line_of(self, path: ConfigPath) -> int | None:
        """The line of ``path``'s value, else of its nearest located ancestor's."""
        if self._text is not None:
            found = self._values.get(path)  # a mapping or a list: known already
            if found is not None:
                return found >> _COLUMN_BITS
            self._complete()
        found = self._nearest(path)
        return found >> _COLUMN_BITS if found is not None else None

    def _nearest(self, path: ConfigPath) -> int | None:
        """The packed position of ``path``'s value, else of its nearest located ancestor's."""
        values = self._values
        for end in range(len(path), -1, -1):
            found = values.get(path[:end])
            if found is not None:
                return found
        return None

    def problem(self, message: str, path: ConfigPath, *, key: bool = False) -> Problem:
        pos = self.locate(path, key=key)
        return Problem(
            message=message,
            path=format_path(path),
            file=self.file,
            line=pos.line if pos else None,
            column=pos.column if pos else None,
        )


def format_path(path: ConfigPath) -> str:
    """``("orchestrator", "runners", 1, "on")`` -> ``"orchestrator.runners[1].on"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_COLUMN_BITS = 24


def pack(line: int, column: int) -> int:
    """A 1-based line and column as one int."""
    return line << _COLUMN_BITS | column


def unpack(packed: int) -> Position:
    return Position(packed >> _COLUMN_BITS, packed & ((1 << _COLUMN_BITS) - 1))


def _position(mark: Any) -> int:
    return pack(mark.line + 1, mark.column + 1)


MAX_DEPTH = 100
"""How deeply mappings and lists may nest; deeper is surely a mistake (or an attack)."""
MAX_ALIASED_VALUES = 100_000
"""How many values aliases may expand to (stops "billion laughs"); the file's own values are
bounded by its size."""

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """LibYAML's parser when PyYAML has it (the wheels do), with the implicit tags of scalars
    cached while it loads: a config repeats the same values thousands of times. The cache
    goes with the loader, so nothing of a file stays in memory once it is loaded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.scalar_tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> Any:
        if kind is not yaml.ScalarNode or not isinstance(value, str):
            return super().resolve(kind, value, implicit)
        key = (value, tuple(implicit))
        tag = self.scalar_tags.get(key)
        if tag is None:
            tag = self.scalar_tags[key] = super().resolve(kind, value, implicit)
        return tag


_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_EMPTY: Any = object()
# What PyYAML's constructors raise for a scalar they cannot read (`2020-13-01`, `!!int x`).
_SCALAR_ERRORS = (ValueError, OverflowError, ArithmeticError, TypeError)


class _TooBig(Exception):
    """Stops building at once: a limit was passed."""


class _NeedsNodes(Exception):
    """The streaming builder met what only the node builder handles (aliases, merge keys,
    complex or duplicate keys, several documents)."""


class _Builder:
    def __init__(self, loader: _Loader, source: SourceMap, *, every_position: bool = True) -> None:
        self.loader = loader
        self.tags = loader.scalar_tags
        self.source = source
        self.values = source._values
        self.keys = source._keys
        self.every_position = every_position
        """Whether the streaming builder records every position (else only where mappings
        and lists start: see :class:`SourceMap`); the node builder always does."""
        self.problems: list[Problem] = []
        """Problems that make the data unusable (a scalar that cannot be read)."""
        self.duplicates: list[Problem] = []
        """Duplicate keys: the first value is kept, so the data is still usable."""
        self._open: set[int] = set()
        self._built: set[int] = set()
        self._aliased = 0
        self._names: dict[str, str] = {}
        """Each key's text once: a large config repeats the same few keys thousands of times."""

    def _problem(self, message: str, path: ConfigPath, mark: yaml.Mark) -> Problem:
        return Problem(message, format_path(path), self.source.file, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: ConfigPath) -> Any:
        self.values[path] = _position(node.start_mark)
        if id(node) in self._built:
            self._aliased += 1
        else:
            self._built.add(id(node))
        if self._aliased > MAX_ALIASED_VALUES:
            raise _TooBig(
                self._problem(
                    f"aliases expand to more than {MAX_ALIASED_VALUES} values",
                    path,
                    node.start_mark,
                )
            )
        if len(path) > MAX_DEPTH:
            raise _TooBig(
                self._problem(f"nested more than {MAX_DEPTH} levels deep", path, node.start_mark)
            )
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self._open:
                # An alias to a node that contains it (`a: &x [*x]`) would never end.
                self.problems.append(
                    self._problem(
                        "an alias refers to a value that contains it", path, node.start_mark
                    )
                )
                return None
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        return self._construct(node, path)

    def stream(self) -> Any:
        """Build from parser events, never holding the document's node tree in memory: most
        configs take this path; anything unusual raises _NeedsNodes."""
        get: Any = self.loader.get_event  # untyped in PyYAML's stubs
        get()  # stream start
        if isinstance(get(), yaml.StreamEndEvent):
            return _EMPTY
        data = self._from_event(get(), ())
        get()  # document end
        if not isinstance(get(), yaml.StreamEndEvent):
            raise _NeedsNodes
        return data

    def _from_event(self, event: Any, path: ConfigPath) -> Any:
        # The hot loop of loading a large config: plain type checks, locals, no recursion
        # for scalar values, and no path built for a scalar value.
        if len(path) > MAX_DEPTH:
            raise _NeedsNodes
        kind = type(event)
        every = self.every_position
        values = self.values
        mark: Any
        if kind is yaml.ScalarEvent:  # the document itself, or an item of a list
            if every:
                mark = event.start_mark
                values[path] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
            return self._scalar(event, path)
        mark = event.start_mark
        values[path] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
        get: Any = self.loader.get_event  # untyped in PyYAML's stubs
        if kind is yaml.SequenceStartEvent:
            items: list[Any] = []
            while type(item := get()) is not yaml.SequenceEndEvent:
                items.append(self._from_event(item, (*path, len(items))))
            return items
        if kind is not yaml.MappingStartEvent:
            raise _NeedsNodes  # an alias
        keys, names = self.keys, self._names
        result: dict[str, Any] = {}
        while type(key := get()) is not yaml.MappingEndEvent:
            name = key.value if type(key) is yaml.ScalarEvent else None
            if name is None or name in result or (name == "<<" and key.implicit[0]):
                raise _NeedsNodes
            name = names.setdefault(name, name)
            if every:
                child = (*path, name)
                mark = key.start_mark
                keys[child] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
            value: Any = get()
            if type(value) is yaml.ScalarEvent:
                if every:
                    mark = value.start_mark
                    values[child] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
                result[name] = self._scalar(value, path, name)
            else:
                result[name] = self._from_event(value, (*path, name))
        return result

    def _scalar(self, event: Any, path: ConfigPath, key: str | None = None) -> Any:
        """The value of a scalar at ``path`` (with ``key``: at that key of ``path``)."""
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.tags.get((event.value, event.implicit))
            if tag is None:
                tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR_TAG:
            return event.value
        if key is not None:
            path = (*path, key)
        node: Any = yaml.ScalarNode
        return self._construct(
            node(tag, event.value, event.start_mark, event.end_mark, event.style), path
        )

    def _construct(self, node: yaml.Node, path: ConfigPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except _SCALAR_ERRORS as exc:
            self.problems.append(
                self._problem(f"cannot read {node.value!r}: {exc}", path, node.start_mark)
            )
            return None

    def _key(self, key_node: yaml.Node, path: ConfigPath) -> str:
        # Keys are always taken as written: YAML 1.1 would turn `on:` into True.
        if isinstance(key_node, yaml.ScalarNode):
            return str(key_node.value)
        return str(self._construct(key_node, (*path, "<key>")))

    def _mapping(self, node: yaml.MappingNode, path: ConfigPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            child = (*path, key)
            if key in result:
                first = unpack(self.keys[child])
                self.duplicates.append(
                    self._problem(
                        f"duplicate key {key!r} (first at line {first.line})",
                        child,
                        key_node.start_mark,
                    )
                )
                continue
            self.keys[child] = _position(key_node.start_mark)
            result[key] = self.build(value_node, child)
        for value_node in merges:
            self._merge(value_node, path, result)
        return result

    def _merge(self, value_node: yaml.Node, path: ConfigPath, result: dict[str, Any]) -> None:
        """``<<: *base`` (or ``<<: [*a, *b]``): add the keys ``result`` does not have yet.

        Keys written in the mapping win over merged ones, and earlier sources over later ones,
        as in YAML's merge key; they are not duplicates."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.problems.append(
                    self._problem(
                        "'<<' merges a mapping or a list of mappings", path, source.start_mark
                    )
                )
                continue
            if id(source) in self._open:
                self.problems.append(
                    self._problem(
                        "an alias refers to a value that contains it", path, source.start_mark
                    )
                )
                continue
            self._open.add(id(source))
            try:
                nested = []
                for key_node, item in source.value:
                    if key_node.tag == _MERGE_TAG:
                        nested.append(item)
                        continue
                    key = self._key(key_node, path)
                    if key not in result:
                        child = (*path, key)
                        self.keys[child] = _position(key_node.start_mark)
                        result[key] = self.build(item, child)
                for item in nested:
                    self._merge(item, path, result)
            finally:
                self._open.discard(id(source))


def load_yaml(
    text: str, file: str, *, duplicates: list[Problem] | None = None
) -> tuple[Any, SourceMap]:
    """Parse one YAML document; raise ConfigError naming the line of any syntax error.

    Duplicate keys are problems too (the first value is kept); given a ``duplicates`` list,
    they are added to it instead of raised, so that they are reported with the rest."""
    return _load(text, file, duplicates, every_position=False)


def _load(
    text: str, file: str, duplicates: list[Problem] | None, *, every_position: bool
) -> tuple[Any, SourceMap]:
    """:func:`load_yaml`; without ``every_position``, a map that locates the rest when asked."""
    source = SourceMap(file)
    builder: _Builder | None = None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        builder = _Builder(loader, source, every_position=every_position)
        try:
            data = builder.stream()
            if not every_position:
                source._text = text
        except _NeedsNodes:
            loader.dispose()
            source = SourceMap(file)
            loader = _Loader(text)
            node = loader.get_single_node()
            data = _EMPTY if node is None else None
            builder = _Builder(loader, source)
            if node is not None:
                data = builder.build(node, ())
        if data is _EMPTY:
            raise ConfigError([Problem("the config file is empty", file=file, line=1, column=1)])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            reason += " ('\\t': YAML indents with spaces, not tabs)"
        raise ConfigError(
            [
                Problem(
                    f"YAML syntax error: {reason}",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
            ]
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(
            [
                Problem(
                    f"YAML error: character #x{int(exc.character):04x} is not allowed",
                    file=file,
                    line=line,
                    column=column,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"YAML error: {exc}", file=file)]) from None
    except _TooBig as exc:
        raise ConfigError([exc.args[0]]) from None
    except RecursionError:
        raise ConfigError(
            [Problem(f"YAML error: nested more than {MAX_DEPTH} levels deep", file=file)]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.problems:
        raise ConfigError([*builder.problems, *builder.duplicates])
    if duplicates is None:
        if builder.duplicates:
            raise ConfigError(builder.duplicates)
    else:
        duplicates.extend(builder.duplicates)
    return data, source
