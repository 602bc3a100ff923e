"""Resolving ``use:`` strings: every spelling, plugins from the config and from entry points."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from open_ticket_ai.base import CompositePipe, ExpressionPipe, HttpRequestPipe, IntervalTrigger
from open_ticket_ai.core.component import Component
from open_ticket_ai.core.config import parse_config
from open_ticket_ai.core.factory import build
from open_ticket_ai.core.orchestration.trigger import Trigger
from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.registry import BUILTINS, ENTRY_POINT_GROUP, Registry
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import ComponentError, ConfigError

PLUGIN_SOURCE = """\
from open_ticket_ai import NoParams, ParamsModel, Pipe, PipeResult, Service, TimeTrigger


class GreetParams(ParamsModel):
    name: str


class GreetPipe(Pipe[GreetParams]):
    async def process(self, ctx):
        return PipeResult.success({"greeting": "hello " + self.params.name})


class EveryTick(TimeTrigger[NoParams]):
    def next_fire_after(self, after, start):
        return after + 1


class Directory(Service[NoParams]):
    pass


class _HiddenPipe(Pipe[NoParams]):
    pass
"""


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Write Python modules into a directory on ``sys.path``; forget them afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def write(name: str, source: str) -> Path:
        path = root / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return root

    yield write
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(root)):
            del sys.modules[name]


def write_dist_info(root: Path, name: str, entry_points: str) -> None:
    """A minimal installed distribution: what pip leaves in site-packages."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n", encoding="utf-8"
    )


# -- spellings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        ("CompositePipe", Pipe, CompositePipe),
        ("ExpressionPipe", Pipe, ExpressionPipe),
        ("HttpRequestPipe", Pipe, HttpRequestPipe),
        ("IntervalTrigger", Trigger, IntervalTrigger),
        ("open_ticket_ai.base:CompositePipe", Pipe, CompositePipe),
        ("open_ticket_ai.base.CompositePipe", Pipe, CompositePipe),
        ("open_ticket_ai.base.pipes.composite_pipe:CompositePipe", Pipe, CompositePipe),
        ("open_ticket_ai.base.pipes.expression_pipe.ExpressionPipe", Pipe, ExpressionPipe),
        ("open_ticket_ai.base.interval_trigger:IntervalTrigger", Trigger, IntervalTrigger),
        ("open_ticket_ai.base.interval_trigger.IntervalTrigger", Trigger, IntervalTrigger),
        ("open_ticket_ai.base.triggers.interval_trigger:IntervalTrigger", Trigger, IntervalTrigger),
        ("open_ticket_ai.base.http_request_pipe:HttpRequestPipe", Pipe, HttpRequestPipe),
        ("  CompositePipe  ", Pipe, CompositePipe),
    ],
)
def test_resolve_accepts_every_spelling(spec: str, kind: type, expected: type) -> None:
    assert Registry().resolve(spec, kind) is expected


def test_resolve_gives_the_same_class_on_the_second_call() -> None:
    registry = Registry()
    first = registry.resolve("open_ticket_ai.base:CompositePipe", Pipe)
    assert registry.resolve("open_ticket_ai.base:CompositePipe", Pipe) is first


def test_short_names_lists_the_built_ins() -> None:
    names = Registry(load_entry_points=False).short_names
    assert names == sorted(names)
    for name in (
        "CompositePipe",
        "ExpressionPipe",
        "HttpRequestPipe",
        "IntervalTrigger",
        "FetchTicketsPipe",
        "UpdateTicketPipe",
        "AddNotePipe",
        "SqliteTicketSystem",
    ):
        assert name in names
    registry = Registry(load_entry_points=False)
    for name in names:  # every built-in short name resolves to the class it names
        assert registry.resolve(name, Component).__name__ == BUILTINS[name].rsplit(":", 1)[1]


def test_a_trigger_is_not_a_pipe() -> None:
    with pytest.raises(ComponentError, match="'IntervalTrigger' is a trigger, not a pipe"):
        Registry().resolve("IntervalTrigger", Pipe)


def test_a_pipe_is_not_a_trigger() -> None:
    with pytest.raises(ComponentError, match="is a pipe, not a trigger"):
        Registry().resolve("open_ticket_ai.base:CompositePipe", Trigger)


def test_a_misspelt_short_name_gets_a_hint() -> None:
    with pytest.raises(
        ComponentError, match="unknown component 'CompositPipe'; did you mean 'CompositePipe'"
    ):
        Registry().resolve("CompositPipe", Pipe)


def test_an_unknown_short_name_lists_the_known_ones() -> None:
    with pytest.raises(ComponentError) as info:
        Registry().resolve("Frobnicator", Pipe)
    assert f"known: {', '.join(sorted(BUILTINS))};" in str(info.value)
    assert "'module:Class'" in str(info.value)


def test_a_misspelt_class_in_a_module_gets_a_hint() -> None:
    with pytest.raises(
        ComponentError,
        match=re.escape(
            "module 'open_ticket_ai.base' has no 'CompositPipe'; did you mean 'CompositePipe'?"
        ),
    ):
        Registry().resolve("open_ticket_ai.base:CompositPipe", Pipe)


def test_a_missing_module_is_named() -> None:
    with pytest.raises(ComponentError, match="cannot import module 'no_such_module_xyz'"):
        Registry().resolve("no_such_module_xyz:Thing", Pipe)


def test_something_that_is_not_a_component_is_refused() -> None:
    with pytest.raises(ComponentError, match=re.escape("'os.path:join' is not a component class")):
        Registry().resolve("os.path:join", Pipe)
    with pytest.raises(ComponentError, match="is not a component class"):
        Registry().resolve("pathlib:Path", Pipe)


@pytest.mark.parametrize("spec", [":", ":Pipe", "module:", "a..b", "open_ticket_ai.base:.X", "."])
def test_a_malformed_name_says_how_to_write_one(spec: str) -> None:
    with pytest.raises(ComponentError, match="is not a component name: write 'module:Class'"):
        Registry().resolve(spec, Pipe)


def test_a_module_that_fails_on_import_is_reported(write_module: Callable[..., Path]) -> None:
    write_module("otai_broken_plugin", "raise RuntimeError('no database')\n")
    with pytest.raises(
        ComponentError,
        match="importing module 'otai_broken_plugin' failed: RuntimeError: no database",
    ):
        Registry().resolve("otai_broken_plugin:Anything", Pipe)


# -- plugin modules ------------------------------------------------------------------------------


def test_add_module_registers_the_public_components_it_defines(
    write_module: Callable[..., Path],
) -> None:
    write_module("otai_plugin_a", PLUGIN_SOURCE)
    registry = Registry(load_entry_points=False)
    assert registry.add_module("otai_plugin_a") == 3
    assert set(registry.short_names) - set(BUILTINS) == {"GreetPipe", "EveryTick", "Directory"}
    assert registry.resolve("GreetPipe", Pipe).__module__ == "otai_plugin_a"
    assert issubclass(registry.resolve("EveryTick", Trigger), Trigger)
    assert issubclass(registry.resolve("Directory", Service), Service)


def test_add_module_skips_classes_imported_from_a_namesake_module(
    write_module: Callable[..., Path],
) -> None:
    # `otai_plug_extra` starts with `otai_plug` but is another module: its class stays out.
    write_module("otai_plug_extra", PLUGIN_SOURCE)
    write_module("otai_plug", "from otai_plug_extra import GreetPipe\n")
    registry = Registry(load_entry_points=False)
    assert registry.add_module("otai_plug") == 0
    assert "GreetPipe" not in registry.short_names


def test_a_plugin_cannot_take_a_built_in_short_name(write_module: Callable[..., Path]) -> None:
    write_module(
        "otai_plugin_clash",
        """\
        from open_ticket_ai import NoParams, Pipe

        class CompositePipe(Pipe[NoParams]):
            pass
        """,
    )
    with pytest.raises(
        ComponentError, match="short name 'CompositePipe' of otai_plugin_clash is taken"
    ):
        Registry(load_entry_points=False).add_module("otai_plugin_clash")


def test_plugins_listed_in_the_config_give_short_names(write_module: Callable[..., Path]) -> None:
    write_module("otai_plugin_cfg", PLUGIN_SOURCE)
    loaded = parse_config(
        """\
plugins: [otai_plugin_cfg]
orchestrator:
  runners:
    - id: greeter
      on:
        - id: tick
          use: EveryTick
      run:
        id: greet
        use: GreetPipe
        params: {name: world}
"""
    )
    compiled = build(loaded)
    assert compiled.runners[0].pipeline.pipe_class.__name__ == "GreetPipe"
    assert type(compiled.triggers["tick"]).__name__ == "EveryTick"


def test_a_plugin_pipe_params_are_validated_at_load(write_module: Callable[..., Path]) -> None:
    write_module("otai_plugin_params", PLUGIN_SOURCE)
    text = """\
open_ticket_ai:
  plugins: [otai_plugin_params]
  orchestrator:
    runners:
      - id: greeter
        run:
          id: greet
          use: GreetPipe
          params: {nme: world}
"""
    with pytest.raises(ConfigError) as info:
        build(parse_config(text))
    # The missing key points at the params mapping, the unknown one at the key itself.
    assert [str(p) for p in info.value.problems] == [
        "config.yml:9:19 open_ticket_ai.orchestrator.runners[0].run.params.name: is required",
        "config.yml:9:20 open_ticket_ai.orchestrator.runners[0].run.params.nme: "
        "unknown key 'nme'; did you mean 'name'?",
    ]


def test_a_plugin_that_cannot_be_imported_is_a_config_problem() -> None:
    text = "plugins: [no_such_plugin_xyz]\norchestrator: {runners: []}\n"
    with pytest.raises(ConfigError) as info:
        build(parse_config(text))
    (problem,) = info.value.problems
    assert (problem.path, problem.line, problem.column) == ("plugins[0]", 1, 11)
    assert "cannot import module 'no_such_plugin_xyz'" in problem.message


def test_plugin_short_names_stay_out_of_other_registries(write_module: Callable[..., Path]) -> None:
    write_module("otai_plugin_scope", PLUGIN_SOURCE)
    Registry(load_entry_points=False).add_module("otai_plugin_scope")
    with pytest.raises(ComponentError, match="unknown component 'GreetPipe'"):
        Registry(load_entry_points=False).resolve("GreetPipe", Pipe)


# -- entry points --------------------------------------------------------------------------------


def test_an_entry_point_naming_a_module_registers_its_components(
    write_module: Callable[..., Path],
) -> None:
    root = write_module("otai_ep_module", PLUGIN_SOURCE)
    write_dist_info(root, "otai_ep_module_dist", "greetings = otai_ep_module")
    registry = Registry()
    assert registry.resolve("GreetPipe", Pipe).__module__ == "otai_ep_module"
    assert {"GreetPipe", "EveryTick", "Directory"} <= set(registry.short_names)


def test_an_entry_point_naming_a_class_registers_that_class(
    write_module: Callable[..., Path],
) -> None:
    root = write_module("otai_ep_class", PLUGIN_SOURCE)
    write_dist_info(root, "otai_ep_class_dist", "greet = otai_ep_class:GreetPipe")
    registry = Registry()
    assert registry.resolve("GreetPipe", Pipe).__module__ == "otai_ep_class"
    assert "EveryTick" not in registry.short_names


def test_entry_point_components_work_in_a_config(write_module: Callable[..., Path]) -> None:
    root = write_module("otai_ep_config", PLUGIN_SOURCE)
    write_dist_info(root, "otai_ep_config_dist", "greetings = otai_ep_config")
    text = "runners:\n  - id: r\n    run: {id: greet, use: GreetPipe, params: {name: x}}\n"
    compiled = build(parse_config(text))
    assert compiled.runners[0].pipeline.pipe_class.__module__ == "otai_ep_config"


def test_entry_points_can_be_left_unloaded(write_module: Callable[..., Path]) -> None:
    root = write_module("otai_ep_off", PLUGIN_SOURCE)
    write_dist_info(root, "otai_ep_off_dist", "greetings = otai_ep_off")
    assert "GreetPipe" in Registry().short_names
    assert "GreetPipe" not in Registry(load_entry_points=False).short_names


def test_a_broken_entry_point_names_itself(write_module: Callable[..., Path]) -> None:
    root = write_module("otai_ep_broken", "raise ImportError('missing dependency frob')\n")
    write_dist_info(root, "otai_ep_broken_dist", "broken = otai_ep_broken")
    with pytest.raises(
        ComponentError,
        match=r"plugin entry point 'broken' \(otai_ep_broken\) failed to load: "
        r"ImportError: missing dependency frob",
    ):
        Registry()
