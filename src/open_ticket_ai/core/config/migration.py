"""Writing a config read in one of Open Ticket AI's formats back in this project's own.

:func:`migrate` translates the text the way loading does (the same front end,
:func:`open_ticket_ai.core.config.loader.translate_upstream`), checks the result's structure,
and writes it as YAML with ruamel.yaml: the file's comments are carried over to the nodes
they stood before (or beside), each translated spot gets a short comment saying what was
written there (``# was: use: base:FetchTicketsPipe``), and the notices of the reading head the
file. Environment overrides and ``.env`` values are never applied: the output holds the
file's own text, templates and all.
"""

from __future__ import annotations

import copy
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from open_ticket_ai.core.config.loader import parse_config, translate_upstream
from open_ticket_ai.core.config.yaml_source import ConfigPath, load_yaml, unpack
from open_ticket_ai.errors import ConfigError, Problem

__all__ = ["Migration", "migrate"]


@dataclass(frozen=True)
class Migration:
    """The outcome: ``text`` in this project's format, or None when the config was in it
    already; the format it was read as, and the notices of that reading."""

    text: str | None
    format: str
    notices: tuple[str, ...]


def migrate(text: str, file: str) -> Migration:
    """``text`` (the config file ``file``) in this project's format. Raises ConfigError for
    broken YAML or a config whose structure is wrong (each problem with file:line:column)."""
    problems: list[Problem] = []
    data, source = load_yaml(text, file, duplicates=problems)
    if problems:
        raise ConfigError(problems)
    original = copy.copy(source.values), copy.copy(source.keys)
    translation = translate_upstream(data, source)
    if translation is None:
        return Migration(None, "this project's", ())
    loaded = parse_config(text, file, environ={})
    if loaded.problems:
        raise ConfigError(list(loaded.problems))
    writer = _Writer(text, original, source.values, source.keys, translation.marks)
    notices = [n for n in translation.notices if not n.startswith("read as ")]
    header = [
        f"Written by `otai migrate` from {Path(file).name}, read as {translation.format} format.",
        "A `# was:` comment says what stood there in that format."
        + (" Reading it noted:" if notices else ""),
        *(f"  - {notice}" for notice in notices),
    ]
    return Migration(writer.write(data, header), translation.format, tuple(translation.notices))


_EOL = re.compile(r"\s*:?\s+#\s?(.*)$")


class _Writer:
    """Builds ruamel.yaml's commented tree of the translated data and dumps it."""

    def __init__(
        self,
        text: str,
        original: tuple[dict[ConfigPath, int], dict[ConfigPath, int]],
        values: dict[ConfigPath, int],
        keys: dict[ConfigPath, int],
        marks: dict[ConfigPath, str],
    ) -> None:
        self.values = values
        self.keys = keys
        self.marks = marks
        self.before, self.beside = _comments(text)
        # Each original node by the line it starts on, as its position: the key of a mapping
        # entry, the value of a list item.
        self.nodes: dict[int, list[int]] = {}
        old_values, old_keys = original
        for packed in old_keys.values():
            self.nodes.setdefault(unpack(packed).line, []).append(packed)
        for path, packed in old_values.items():
            if path and isinstance(path[-1], int):
                self.nodes.setdefault(unpack(packed).line, []).append(packed)
        self.placed: dict[int, ConfigPath] = {}
        """Original position of a list item -> the output path of the item that stood there."""
        self.placed_keys: dict[int, ConfigPath] = {}
        """The same for mapping keys (an item and its first key share their position)."""
        self.columns: dict[ConfigPath, int] = {}

    def write(self, data: Any, header: list[str]) -> str:
        tree = self._build(data, (), 0)
        self._comment(tree)
        if isinstance(tree, CommentedMap | CommentedSeq):
            tree.yaml_set_start_comment("\n".join(header))
        out = io.StringIO()
        dumper = YAML()
        dumper.indent(mapping=2, sequence=4, offset=2)
        dumper.width = 4096
        dumper.dump(tree, out)
        return out.getvalue()

    def _build(self, value: Any, path: ConfigPath, column: int) -> Any:
        """The commented tree of ``value``; remembers where each original position went."""
        if isinstance(value, dict):
            built = CommentedMap()
            for key, item in value.items():
                child = (*path, key)
                self._place(self.keys.get(child), child, column, self.placed_keys)
                built[key] = self._build(item, child, column + 2)
            return built
        if isinstance(value, list):
            seq = CommentedSeq()
            for index, item in enumerate(value):
                child = (*path, index)
                self._place(self.values.get(child), child, column, self.placed)
                seq.append(self._build(item, child, column + 2))
            return seq
        if isinstance(value, str) and "\n" in value:
            return LiteralScalarString(value)
        return value

    def _place(
        self, packed: int | None, path: ConfigPath, column: int, table: dict[int, ConfigPath]
    ) -> None:
        self.columns[path] = column
        if packed is not None:
            table.setdefault(packed, path)

    def _comment(self, tree: Any) -> None:
        before: dict[ConfigPath, list[str]] = {}
        beside: dict[ConfigPath, list[str]] = {}
        for line, text in self.before:
            later = [n for n in self.nodes if n > line]
            target = self._went(min(later), outermost=True) if later else None
            if target is not None:
                before.setdefault(self._item_of(tree, target), []).append(text)
        for path, text in self.marks.items():
            beside.setdefault(path, []).append(text)
        for line, text in self.beside:
            target = self._went(line, outermost=False)
            if target is not None:
                beside.setdefault(target, []).append(text)
        for path, texts in before.items():
            holder = self._holder(tree, path)
            if holder is not None and (path[:-1] or holder[1] != next(iter(holder[0]), None)):
                # (before the file's first key, the header holds the place)
                holder[0].yaml_set_comment_before_after_key(
                    holder[1], before="\n".join(texts), indent=self.columns.get(path, 0)
                )
        for path, texts in beside.items():
            holder = self._holder(tree, path)
            if holder is not None:
                holder[0].yaml_add_eol_comment("# " + "; ".join(texts), holder[1])

    def _went(self, line: int, *, outermost: bool) -> ConfigPath | None:
        """Where the node starting on ``line`` is in the output: the outermost one there (for
        a comment before it), or the last (for one beside it); None if it did not survive."""
        positions = sorted(set(self.nodes.get(line, ())))
        items = [self.placed[n] for n in positions if n in self.placed]
        keys = [self.placed_keys[n] for n in positions if n in self.placed_keys]
        if outermost:
            return min([*items, *keys], key=len, default=None)
        return keys[-1] if keys else (items[-1] if items else None)

    def _item_of(self, tree: Any, path: ConfigPath) -> ConfigPath:
        """A list item's first key stands for the item (a comment goes before the dash)."""
        while len(path) >= 2 and isinstance(path[-2], int):
            holder = self._holder(tree, path)
            if holder is None or next(iter(holder[0]), None) != path[-1]:
                break
            path = path[:-1]
        return path

    @staticmethod
    def _holder(tree: Any, path: ConfigPath) -> tuple[Any, Any] | None:
        """The mapping or list holding ``path``'s node, and its key or index there."""
        if not path:
            return None
        node = tree
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        last = path[-1]
        if isinstance(node, CommentedMap) and last in node:
            return node, last
        if isinstance(node, CommentedSeq) and isinstance(last, int) and last < len(node):
            return node, last
        return None


def _comments(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The file's comments: blocks of whole-line comments (by their last line, the text of
    every line joined), and end-of-line comments (by line), never inside a scalar."""
    inside: set[int] = set()
    ends: list[tuple[int, int]] = []
    for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        start, end = getattr(event, "start_mark", None), getattr(event, "end_mark", None)
        if start is None or end is None:
            continue
        if isinstance(event, yaml.ScalarEvent):
            if end.line > start.line:
                inside.update(range(start.line + 2, end.line + 2))
                if event.style in ("|", ">"):
                    inside.discard(start.line + 1)
                continue
            ends.append((start.line + 1, end.column))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent) and end.line == (
            start.line
        ):
            ends.append((end.line + 1, end.column))
    lines = text.splitlines()
    before: list[tuple[int, str]] = []
    block: list[str] = []
    for number, row in enumerate(lines, 1):
        stripped = row.strip()
        if number not in inside and stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        if block:
            before.append((number - 1, "\n".join(block)))
            block = []
    beside: dict[int, str] = {}
    for line, column in ends:
        if line in inside or line > len(lines):
            continue
        found = _EOL.match(lines[line - 1][column:])
        if found and found.group(1).strip():
            beside[line] = found.group(1).strip()
    return before, sorted(beside.items())
