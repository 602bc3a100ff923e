"""YAML text -> plain data, remembering the line and column of every key and value."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class SourceMap:
    """Where each config path's key and value stand in the file."""

    file: str
    values: dict[ConfigPath, Position] = field(default_factory=dict)
    keys: dict[ConfigPath, Position] = field(default_factory=dict)

    def locate(self, path: ConfigPath, *, key: bool = False) -> Position | None:
        """Position of ``path`` (its key when ``key``), else of its nearest located ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
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


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: SourceMap) -> None:
        self.loader = loader
        self.source = source
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: ConfigPath) -> Any:
        self.source.values[path] = _position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                # Keys are always taken as written: YAML 1.1 would turn `on:` into True.
                if isinstance(key_node, yaml.ScalarNode):
                    key = str(key_node.value)
                else:
                    key = str(self.loader.construct_object(key_node, deep=True))
                child = (*path, key)
                if key in result:
                    first = self.source.keys[child]
                    self.problems.append(
                        Problem(
                            f"duplicate key {key!r} (first at line {first.line})",
                            format_path(child),
                            self.source.file,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                        )
                    )
                    continue
                self.source.keys[child] = _position(key_node.start_mark)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document; raise ConfigError naming the line of any syntax error."""
    source = SourceMap(file)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem("the config file is empty", file=file, line=1, column=1)])
        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
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
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"YAML error: {exc}", file=file)]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ConfigError(builder.problems)
    return data, source
