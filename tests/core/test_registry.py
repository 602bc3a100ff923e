"""Resolving ``use:`` strings: every spelling, plugins from the config and from entry points."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest

from open_ticket_ai.base import CompositePipe, ExpressionPipe, HttpRequestPipe, IntervalTrigger
from open_ticket_ai.core import registry as registry_module
from open_ticket_ai.core.component import Component
from open_ticket_ai.core.config import parse_config
from open_ticket_ai.core.factory import build
from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.registry import (
    DISTRIBUTION,
    ENTRY_POINT_GROUP,
    Registry,
    reload_entry_points,
)
from open_ticket_ai.core.services import Service
from open_ticket_ai.core.triggers.base import Trigger
from open_ticket_ai.errors import ComponentError, ConfigError

ROOT = Path(__file__).resolve().parents[2]

BUILTINS: dict[str, str] = {
    point.name: point.value
    for point in metadata.distribution(DISTRIBUTION).entry_points.select(group=ENTRY_POINT_GROUP)
}
"""The built-ins as the installed metadata declares them: short name -> ``module:Class``."""

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


@pytest.fixture(autouse=True)
def fresh_entry_points() -> Iterator[None]:
    """Entry points are read once per process; tests that install a plugin read them again."""
    reload_entry_points()
    yield
    reload_entry_points()


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


def write_dist_info(
    root: Path, name: str, entry_points: str, group: str = ENTRY_POINT_GROUP
) -> None:
    """A minimal installed distribution: what pip leaves in site-packages."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry_points}\n", encoding="utf-8")


def qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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
    assert names == sorted(BUILTINS)
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


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_built_in_entry_point_resolves_to_the_class_it_names(name: str) -> None:
    cls = Registry(load_entry_points=False).resolve(name, Component)
    assert qualname(cls) == BUILTINS[name]
    assert Registry().resolve(name, Component) is cls


def test_an_alias_resolves_to_the_class_it_stands_for() -> None:
    from open_ticket_ai.tickets.adapters.znuny import ZnunyTicketSystem

    registry = Registry()
    assert registry.resolve("OtoboTicketSystem", Service) is ZnunyTicketSystem
    assert registry.resolve("ZnunyTicketSystem", Service) is ZnunyTicketSystem


def test_the_pyproject_declares_the_installed_built_ins() -> None:
    """The metadata is written by ``pip install -e .``: rerun it after editing pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == BUILTINS, "installed metadata is stale: run pip install -e ."
    for name, value in declared.items():  # one form: ShortName = "module:Class"
        assert re.fullmatch(r"open_ticket_ai(\.\w+)+:[A-Z]\w*", value), (name, value)
        assert re.fullmatch(r"[A-Z]\w*", name), name


def test_resolving_a_short_name_imports_only_its_component() -> None:
    component_modules = sorted({value.partition(":")[0] for value in BUILTINS.values()})
    code = textwrap.dedent(
        f"""\
        import sys
        import open_ticket_ai
        from open_ticket_ai.core.registry import Registry
        from open_ticket_ai.core.services import Service

        modules = {component_modules!r}
        registry = Registry()
        print(sorted(m for m in modules if m in sys.modules))
        registry.resolve("SqliteTicketSystem", Service)
        print(sorted(m for m in modules if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["[]", "['open_ticket_ai.tickets.adapters.sqlite']"]


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
    with pytest.raises(
        ComponentError, match="no module 'no_such_module_xyz': it is looked for beside the config"
    ):
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
    assert "no module 'no_such_plugin_xyz'" in problem.message
    assert "list its directory under plugin_paths" in problem.message


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
    write_dist_info(root, "otai_ep_class_dist", "Greeter = otai_ep_class:GreetPipe")
    registry = Registry()
    assert "otai_ep_class" not in sys.modules  # imported when a config uses it, not before
    cls = registry.resolve("Greeter", Pipe)
    assert cls.__module__ == "otai_ep_class"
    # As before entry-point names counted, the class is known by its own name too.
    assert registry.resolve("GreetPipe", Pipe) is cls
    assert "EveryTick" not in registry.short_names


def test_a_class_entry_point_that_fails_names_itself_when_used(
    write_module: Callable[..., Path],
) -> None:
    root = write_module("otai_ep_lazy_broken", "raise ImportError('missing dependency frob')\n")
    write_dist_info(root, "otai_ep_lazy_dist", "Frob = otai_ep_lazy_broken:FrobPipe")
    registry = Registry()  # nothing imported yet, so nothing fails yet
    with pytest.raises(
        ComponentError,
        match=r"plugin entry point 'Frob' \(otai_ep_lazy_broken:FrobPipe\) of "
        r"otai_ep_lazy_dist 1.0 failed to load: importing module 'otai_ep_lazy_broken' "
        r"failed: ImportError: missing dependency frob",
    ):
        registry.resolve("Frob", Pipe)


def test_a_class_entry_point_naming_no_component_is_refused_when_used(
    write_module: Callable[..., Path],
) -> None:
    root = write_module("otai_ep_not_a_class", "VALUE = 1\n")
    write_dist_info(root, "otai_ep_nac_dist", "Value = otai_ep_not_a_class:VALUE")
    with pytest.raises(ComponentError, match="'otai_ep_not_a_class:VALUE' is not a component"):
        Registry().resolve("Value", Pipe)


CLASHING_SOURCE = """\
from open_ticket_ai import NoParams, Pipe


class CompositePipe(Pipe[NoParams]):
    pass


class OtherPipe(Pipe[NoParams]):
    pass
"""


@pytest.mark.parametrize(
    "entry_point", ["CompositePipe = otai_ep_clash:CompositePipe", "clash = otai_ep_clash"]
)
def test_a_built_in_keeps_its_name_when_a_plugin_declares_it(
    entry_point: str, write_module: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    root = write_module("otai_ep_clash", CLASHING_SOURCE)
    write_dist_info(root, "otai_clash_dist", entry_point)
    with caplog.at_level(logging.WARNING, logger="open_ticket_ai.registry"):
        registry = Registry()
        Registry()  # reported once per process, not once per registry
    assert registry.resolve("CompositePipe", Pipe) is CompositePipe
    plugin_class = registry.resolve("otai_ep_clash:CompositePipe", Pipe)
    assert plugin_class is not CompositePipe
    own = metadata.distribution(DISTRIBUTION)
    assert [r.getMessage() for r in caplog.records] == [
        "plugin distribution otai_clash_dist 1.0 declares the short name 'CompositePipe' "
        f"(otai_ep_clash:CompositePipe), which is a built-in of {own.name} {own.version} "
        f"({BUILTINS['CompositePipe']}); 'CompositePipe' keeps meaning the built-in: write "
        "'otai_ep_clash:CompositePipe' to use the plugin's"
    ]
    if entry_point.startswith("clash"):  # the module's other components keep their names
        assert registry.resolve("OtherPipe", Pipe).__module__ == "otai_ep_clash"


def test_a_plugin_naming_a_built_in_class_is_no_clash(
    write_module: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    root = write_module("otai_ep_reexport", "from open_ticket_ai.base import CompositePipe\n")
    write_dist_info(root, "otai_reexport_dist", f"CompositePipe = {BUILTINS['CompositePipe']}")
    with caplog.at_level(logging.WARNING, logger="open_ticket_ai.registry"):
        assert Registry().resolve("CompositePipe", Pipe) is CompositePipe
    assert caplog.records == []


def test_a_short_name_two_plugins_declare_is_refused_naming_both(
    write_module: Callable[..., Path],
) -> None:
    root = write_module("otai_ep_one", PLUGIN_SOURCE)
    write_module("otai_ep_two", PLUGIN_SOURCE)
    write_dist_info(root, "otai_one_dist", "Greet = otai_ep_one:GreetPipe")
    write_dist_info(root, "otai_two_dist", "Greet = otai_ep_two:GreetPipe")
    registry = Registry()  # the clash matters only to a config that uses the name
    with pytest.raises(
        ComponentError,
        match=re.escape(
            "short name 'Greet' is declared by more than one plugin: otai_ep_one:GreetPipe "
            "from otai_one_dist 1.0 and otai_ep_two:GreetPipe from otai_two_dist 1.0; write "
            "the one you mean as 'module:Class'"
        ),
    ):
        registry.resolve("Greet", Pipe)
    assert registry.resolve("otai_ep_two:GreetPipe", Pipe).__module__ == "otai_ep_two"


def test_a_class_name_yields_to_an_entry_point_declaring_it(
    write_module: Callable[..., Path],
) -> None:
    root = write_module("otai_ep_implied", PLUGIN_SOURCE)
    write_module("otai_ep_explicit", PLUGIN_SOURCE)
    write_dist_info(root, "otai_implied_dist", "hello = otai_ep_implied:GreetPipe")
    write_dist_info(root, "otai_explicit_dist", "GreetPipe = otai_ep_explicit:GreetPipe")
    registry = Registry()
    assert registry.resolve("GreetPipe", Pipe).__module__ == "otai_ep_explicit"
    assert registry.resolve("hello", Pipe).__module__ == "otai_ep_implied"


def test_without_the_package_metadata_the_registry_says_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "DISTRIBUTION", "open-ticket-ai-not-installed")
    reload_entry_points()
    with pytest.raises(
        ComponentError,
        match=r"distribution 'open-ticket-ai-not-installed' is not installed: its built-in "
        r"components are entry points .*pip install -e \.",
    ):
        Registry(load_entry_points=False)


def test_metadata_older_than_the_entry_points_says_to_reinstall(
    write_module: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_module("otai_stale", "")
    write_dist_info(root, "otai_stale_dist", "otai = otai_stale:main", group="console_scripts")
    monkeypatch.setattr(registry_module, "DISTRIBUTION", "otai_stale_dist")
    reload_entry_points()
    with pytest.raises(
        ComponentError,
        match=r"metadata of otai_stale_dist 1.0 declares no built-in component .*"
        r"reinstall the package \(from a source checkout: pip install -e \.\)",
    ):
        Registry()


def test_entry_points_are_read_once_per_process(
    write_module: Callable[..., Path],
) -> None:
    Registry()
    root = write_module("otai_ep_late", PLUGIN_SOURCE)
    write_dist_info(root, "otai_ep_late_dist", "greetings = otai_ep_late")
    assert "GreetPipe" not in Registry().short_names
    reload_entry_points()
    assert "GreetPipe" in Registry().short_names


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
        match=r"plugin entry point 'broken' \(otai_ep_broken\) of otai_ep_broken_dist 1.0 "
        r"failed to load: ImportError: missing dependency frob",
    ):
        Registry()


@pytest.mark.parametrize(
    ("spec", "ours"),
    [
        ("base:FetchTicketsPipe", "FetchTicketsPipe"),
        ("otai_base:CompositePipe", "CompositePipe"),
        ("base:IntervalTrigger", "IntervalTrigger"),
        ("otobo-znuny:OTOBOZnunyTicketSystemService", "OTOBOZnunyTicketSystemService"),
        ("zammad:ZammadTicketSystemService", "ZammadTicketSystemService"),
        ("hf-local:HFClassificationService", "HFClassificationService"),
        ("base:ClassificationPipe", "ClassificationPipe"),
    ],
)
def test_open_ticket_ai_plugin_prefixes_name_ours(spec: str, ours: str) -> None:
    registry = Registry()
    assert registry.resolve(spec, Component) is registry.resolve(ours, Component)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("base:JinjaRenderer", "templates are built in"),
        ("base:NoSuchPipe", "no component 'NoSuchPipe' under base: (base:CompositePipe"),
        ("my-plugin:Thing", "'my-plugin' is no module (a module name has no '-')"),
    ],
)
def test_other_open_ticket_ai_names_say_what_to_write(spec: str, says: str) -> None:
    with pytest.raises(ComponentError, match=re.escape(says)):
        Registry().resolve(spec, Component)
