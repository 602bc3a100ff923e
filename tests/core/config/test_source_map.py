"""The source map of a loaded config: where mappings and lists start is known at once, every
other position when first asked for, and every answer is the one a map of every position
gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from open_ticket_ai.core.config import yaml_source
from open_ticket_ai.core.config.yaml_source import SourceMap, load_yaml

ROOT = Path(__file__).resolve().parents[3]

MIXED = """\
# a comment first
orchestrator:
  runners:
    - id: a
      on: [{id: t, params: {seconds: 5}}, every_minute]
      run:
        id: p
        steps:
          - {id: one, use: ExpressionPipe, params: {expression: "{{ 1 }}"}}
          - id: two
            use: ExpressionPipe
            params:
              expression: >-
                {{ 2 }}
    - id: b
      run: {id: q, use: ExpressionPipe, params: {expression: [1, [2, [3, {x: 4}]], "five"]}}
  flags: [true, 1.5, null, 2020-01-01, "quoted"]
"""

TEXTS = [
    pytest.param(MIXED, id="mixed-styles"),
    pytest.param("- 1\n- [2, 3]\n- {a: b}\n", id="a-list-at-the-root"),
    *(
        pytest.param(path.read_text(), id=path.name)
        for path in sorted((ROOT / "examples").glob("*.yml"))
    ),
]


def _every(text: str) -> SourceMap:
    _, every = yaml_source._load(text, "config.yml", [], every_position=True)
    return every


@pytest.mark.parametrize("text", TEXTS)
def test_the_positions_known_at_once_are_those_of_every_mapping_and_list(text: str) -> None:
    data, lazy = load_yaml(text, "config.yml")
    every = _every(text)
    containers: list[tuple[str | int, ...]] = []

    def walk(value: object, path: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            containers.append(path)
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list):
            containers.append(path)
            for index, item in enumerate(value):
                walk(item, (*path, index))

    walk(data, ())
    assert containers
    for path in containers:
        assert lazy.line_of(path) == every.line_of(path), path
    assert lazy._text is not None, "a mapping's or a list's line read the text again"


@pytest.mark.parametrize("text", TEXTS)
def test_every_other_answer_is_that_of_a_map_of_every_position(text: str) -> None:
    _, lazy = load_yaml(text, "config.yml")
    every = _every(text)
    paths = sorted(every.values, key=repr)
    assert [lazy.line_of(path) for path in paths] == [every.line_of(path) for path in paths]
    assert lazy.values == every.values
    assert lazy.keys == every.keys
    for path in paths:
        assert lazy.locate(path) == every.locate(path)
        assert lazy.locate(path, key=True) == every.locate(path, key=True)
        assert lazy.problem("wrong", path, key=True) == every.problem("wrong", path, key=True)
    missing = ("orchestrator", "nowhere", 3)
    assert lazy.locate(missing) == every.locate(missing)


def test_the_text_is_read_again_once_and_only_when_asked_beyond_the_containers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[bool] = []
    load = yaml_source._load

    def counted(*args: object, every_position: bool) -> object:
        loads.append(every_position)
        return load(*args, every_position=every_position)  # type: ignore[arg-type]

    monkeypatch.setattr(yaml_source, "_load", counted)
    _, source = load_yaml(MIXED, "config.yml")
    runner = ("orchestrator", "runners", 0)
    assert source.line_of((*runner, "run")) == 7  # where the mapping starts: its first key
    assert source.line_of((*runner, "run", "steps", 1)) == 10
    assert loads == [False]
    assert source.line_of((*runner, "id")) == 4  # a scalar: every position is read now
    assert source.locate((*runner, "run"), key=True) == yaml_source.Position(6, 7)
    assert source.line_of(("orchestrator", "flags", 3)) == 17
    assert loads == [False, True]


def test_a_scalar_that_cannot_be_read_is_located_exactly() -> None:
    text = "orchestrator:\n  runners:\n    - id: a\n      when: !!int nine\n"
    with pytest.raises(yaml_source.ConfigError) as caught:
        load_yaml(text, "config.yml")
    [problem] = caught.value.problems
    assert (problem.line, problem.column, problem.path) == (4, 13, "orchestrator.runners[0].when")


def test_a_key_written_many_times_is_kept_once() -> None:
    text = "".join(f"- {{id: r{i}, params: {{seconds: {i}}}}}\n" for i in range(3))
    data, _ = load_yaml(text, "config.yml")
    first, *others = data
    for other in others:
        assert all(a is b for a, b in zip(first, other, strict=True))
        assert next(iter(first["params"])) is next(iter(other["params"]))
