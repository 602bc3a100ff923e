"""The public plugin API is exported from ``open_ticket_ai``, the built-in components use it,
and imports run one way: errors -> core -> runtime -> http -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import open_ticket_ai

SRC = Path(open_ticket_ai.__file__).resolve().parent

PLUGIN_API = {
    "Pipe",
    "PipeContext",
    "PipeResult",
    "PipeStatus",
    "Action",
    "Decision",
    "Trigger",
    "TimeTrigger",
    "EventTrigger",
    "TriggerHost",
    "FireOutcome",
    "FireStatus",
    "RunEnded",
    "RunOutcome",
    "Service",
    "ServiceId",
    "ServiceOrPath",
    "TicketSystem",
    "ParamsModel",
    "Duration",
    "OpenTicketAIError",
    "ConfigError",
    "ComponentError",
    "TemplateError",
    "PipeError",
    "TicketSystemError",
    "TicketNotFoundError",
}

COMPONENTS = ("base", "tickets/pipes.py", "tickets/adapters", "classification", "demo")


def test_the_plugin_api_is_exported() -> None:
    assert set(open_ticket_ai.__all__) >= PLUGIN_API
    for name in open_ticket_ai.__all__:
        assert getattr(open_ticket_ai, name) is not None, name


def test_every_error_is_exported() -> None:
    from open_ticket_ai import errors

    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert classes <= set(open_ticket_ai.__all__)


def imports_of(path: Path) -> list[tuple[int, str, list[str], bool]]:
    """(line, module, names, under TYPE_CHECKING) of each absolute import in a module."""
    tree = ast.parse(path.read_text())
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            guarded.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            found.append((node.lineno, node.module, names, id(node) in guarded))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, alias.name, [], id(node) in guarded))
    return found


def component_files() -> list[Path]:
    files: list[Path] = []
    for part in COMPONENTS:
        target = SRC / part
        files.extend([target] if target.is_file() else sorted(target.rglob("*.py")))
    return files


@pytest.mark.parametrize("path", component_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_built_in_components_import_the_plugin_api_from_the_package(path: Path) -> None:
    wrong = [
        f"line {line}: {name} from {module}"
        for line, module, names, _ in imports_of(path)
        if module.startswith("open_ticket_ai.")
        for name in names
        if name in PLUGIN_API
    ]
    assert wrong == []


LAYERS = {"errors": 0, "core": 1, "runtime": 2, "http": 3, "cli": 4}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "open_ticket_ai" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


@pytest.mark.parametrize(
    "path",
    sorted(
        p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0].removesuffix(".py") in LAYERS
    ),
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_imports_run_one_way(path: Path) -> None:
    own = LAYERS[path.relative_to(SRC).parts[0].removesuffix(".py")]
    upward = [
        f"line {line}: {module}"
        for line, module, _, guarded in imports_of(path)
        if not guarded and (target := layer_of(module)) is not None and target > own
    ]
    assert upward == []
