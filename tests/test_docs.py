"""The README's configs and plugin example work as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import open_ticket_ai
from open_ticket_ai import build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def yaml_blocks() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"```yaml\n(.*?)```", text, re.DOTALL):
            line = text.count("\n", 0, match.start()) + 1
            found.append((doc.name, line, match.group(1)))
    return found


BLOCKS = yaml_blocks()


def test_the_docs_have_configs() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("doc", "line", "text"), BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_doc_config_validates(
    doc: str, line: int, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))
    # The environment a doc's config names, set as the reader would set it.
    for name in set(re.findall(r"env\.(OTAI_[A-Z0-9_]+)", text)):
        monkeypatch.setenv(name, f"docs-example-{name.lower()}")
    compiled = build(parse_config(text, f"{doc}:{line}"))
    assert compiled.runners


@pytest.mark.parametrize("name", ["greeting.py", "wall_clock.py"])
def test_readme_plugin_examples_are_the_shipped_files(name: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    plugin = (ROOT / "examples" / "plugins" / name).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert any(block.strip() in plugin for block in blocks)


def test_readme_trigger_example_fires_on_the_wall_clock_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))
    config = next(text for _, _, text in BLOCKS if "WallClockTrigger" in text)
    compiled = build(parse_config(config))
    trigger = compiled.triggers["every_30s"]
    assert trigger.next_fire_after(1000.0, 0.0) == 1020.0  # type: ignore[attr-defined]
    assert trigger.next_fire_after(1020.0, 0.0) == 1050.0  # type: ignore[attr-defined]


def test_readme_plugin_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))
    monkeypatch.setenv("OTAI_NAME", "Ada")
    config = next(text for _, _, text in BLOCKS if "GreetingPipe" in text)
    orchestrator = Orchestrator(build(parse_config(config)))
    result = asyncio.run(orchestrator.run_once("greeter"))
    assert result.succeeded
    assert result.data == {"value": "Hello, Ada!"}


def test_public_api_is_declared() -> None:
    exported = set(open_ticket_ai.__all__)
    public = {name for name in vars(open_ticket_ai) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(open_ticket_ai, name)).__name__ == "module"}
    assert exported == (public - modules) | {"__version__"}
    for name in exported:
        assert hasattr(open_ticket_ai, name)


def test_the_readme_event_table_lists_every_event_the_code_defines() -> None:
    from open_ticket_ai.runtime import events

    defined = {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+\.[a-z_]+", value)
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \|", readme, re.MULTILINE)
    listed = {name for row in rows for name in re.findall(r"`([a-z_.]+)`", row)}
    assert len(defined) >= 30
    assert sorted(defined - listed) == []


def test_the_readme_first_config_counts_the_embedded_helpdesks_waiting_tickets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
    from open_ticket_ai.tickets.models import NewTicket

    async def seed() -> None:
        desk = SqliteTicketSystem(SqliteParams(path="var/demo/helpdesk.sqlite", create=True))
        await desk.open()
        try:
            for n in range(3):
                await desk.create(NewTicket(subject=f"waiting {n}", queue="Incoming"))
            await desk.create(NewTicket(subject="sorted", queue="Billing"))
        finally:
            await desk.close()

    monkeypatch.chdir(tmp_path)
    asyncio.run(seed())
    first = next(text for doc, _, text in BLOCKS if doc == "README.md")
    assert "ticket_counter" in first
    orchestrator = Orchestrator(build(parse_config(first, "config.yml")))
    assert orchestrator.compiled.warnings == ()
    ended: list[object] = []
    orchestrator.bus.subscribe(ended.append, name="test")
    result = asyncio.run(orchestrator.run_once("ticket_counter"))
    assert result.succeeded, result.message
    [run] = [e for e in ended if getattr(e, "results", None)]
    assert run.results["count"].data["value"] == "3 tickets wait in Incoming"  # type: ignore[attr-defined]
