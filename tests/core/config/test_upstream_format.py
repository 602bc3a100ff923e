"""Configs in Open Ticket AI's 1.1+ format load and run as written: translated into this
project's form before validation, with notices for what has no meaning here and error
locations in the original text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, TicketSearch

HERE = Path(__file__).parent / "upstream_configs"


async def seed(db: Path) -> None:
    desk = SqliteTicketSystem(SqliteParams(path=str(db)))
    await desk.open()
    try:
        await desk.create(NewTicket(subject="first", queue="Inbox"))
        await desk.create(NewTicket(subject="second", queue="Inbox"))
    finally:
        await desk.close()


async def queues(db: Path) -> dict[str, tuple[str | None, int]]:
    desk = SqliteTicketSystem(SqliteParams(path=str(db)))
    await desk.open()
    try:
        found = await desk.search(TicketSearch(limit=10))
        return {t.subject: (t.queue, len(await desk.notes(t.id))) for t in found}
    finally:
        await desk.close()


def test_a_v11_config_loads_says_how_it_was_read_and_routes_a_ticket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "desk.sqlite"
    asyncio.run(seed(db))
    monkeypatch.setenv("OTAI_UPSTREAM_DESK", str(db))
    loaded = load_config(str(HERE / "v11-route.yml"))
    assert loaded.problems == ()
    notices = " | ".join(loaded.notices)
    assert "read as Open Ticket AI 1.1+ format (api_version '>=1.0.0'" in notices
    assert "`otai migrate CONFIG` writes it in this project's format" in notices
    assert "service 'jinja_default' (base:JinjaRenderer): templates are built in" in notices
    assert "orchestrator_sleep: not needed here" in notices
    assert "infrastructure.logging: read as orchestrator.logging (level 'INFO')" in notices
    assert loaded.config.orchestrator.logging.level == "INFO"
    compiled = build(loaded)
    [runner] = compiled.runners
    assert runner.id == "queue-processor"
    assert runner.triggers == ("hourly",)
    assert [s.id for s in runner.pipeline.steps] == [
        "fetch-next-ticket",
        "add-acknowledgment",
        "move-to-processed",
    ]
    result = asyncio.run(Orchestrator(compiled).run_once("queue-processor"))
    assert result.succeeded, result.message
    after = asyncio.run(queues(db))
    assert sorted(after.values()) == [("Inbox", 0), ("Processed", 1)]


def test_an_error_in_a_v11_config_points_into_the_original_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTAI_UPSTREAM_DESK", str(tmp_path / "desk.sqlite"))
    text = (HERE / "v11-route.yml").read_text().replace("limit: 1", "limit: 0")
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "limit: 0" in row)
    assert problem.startswith(f"config.yml:{line}:")
    assert "ticket_search_criteria.limit: must be greater than or equal to 1" in problem


@pytest.mark.parametrize(
    ("version", "says"),
    [("'>=2.0'", "cannot be met: this project reads"), ("'soon'", "is not a version specifier")],
)
def test_an_api_version_that_cannot_be_met_is_an_error(version: str, says: str) -> None:
    text = (HERE / "v11-route.yml").read_text().replace("'>=1.0.0'", version)
    loaded = parse_config(text, "config.yml")
    [problem] = [str(p) for p in loaded.problems]
    assert problem.startswith("config.yml:3:")
    assert says in problem


def test_our_own_format_is_not_touched() -> None:
    loaded = parse_config(
        "open_ticket_ai:\n  orchestrator:\n    runners:\n      - id: r\n"
        "        run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n",
        "config.yml",
    )
    assert loaded.notices == ()
    assert loaded.problems == ()


SHARED = Path(__file__).resolve().parents[4] / "shared" / "compat" / "upstream"
READ_HERE = [
    "head-configExamples-fetch-addnote.yml",
    "head-configExamples-update-ticket-subject.yml",
]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the upstream configs are absent ({SHARED})")
@pytest.mark.parametrize("name", READ_HERE)
def test_an_upstream_config_runs_against_the_embedded_helpdesk(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    monkeypatch.setenv("OTAI_E2E_OTOBO_PASSWORD", "never-sent")
    loaded = load_config(str(SHARED / name))
    assert loaded.problems == ()
    # The swap is made on the parsed config: no address of the file is ever contacted.
    db = tmp_path / "desk.sqlite"
    services = [
        service.model_copy(update={"use": "SqliteTicketSystem", "params": {"path": str(db)}})
        if "Znuny" in service.use
        else service
        for service in loaded.config.services
    ]
    swapped = dataclasses.replace(
        loaded, config=loaded.config.model_copy(update={"services": services})
    )
    compiled = build(swapped)
    queue = "~Test-Queue1" if "fetch" in name else None

    async def seed() -> None:
        desk = SqliteTicketSystem(SqliteParams(path=str(db)))
        await desk.open()
        try:
            await desk.create(NewTicket(subject="from upstream", queue=queue or "Inbox"))
        finally:
            await desk.close()

    asyncio.run(seed())
    if queue is None:  # this example updates ticket 1312 by its id
        import sqlite3

        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE tickets SET id = 1312")
    [runner] = compiled.runners
    result = asyncio.run(Orchestrator(compiled).run_once(runner.id))
    assert result.succeeded, result.message
    [(subject, (where, notes))] = asyncio.run(queues(db)).items()
    if queue is None:
        assert subject.startswith("E2E Update")
        assert subject.endswith(":: updated")
    else:
        assert (where, notes) == ("~Test-Queue2", 1)  # acknowledged, then moved


def test_plugins_as_distributions_are_checked_against_what_is_installed() -> None:
    text = (
        "open_ticket_ai:\n"
        "  plugins:\n"
        "    - {name: otai-hf-local, version: '>=1.0'}\n"
        "    - otai-otobo-znuny\n"
        "    - {name: pytest, version: '>=1'}\n"
        "    - {name: pytest, version: '<1'}\n"
        "    - {name: no-such-distribution-xyz}\n"
        "  orchestrator:\n"
        "    runners:\n"
        "      - id: r\n"
        "        run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n"
    )
    loaded = parse_config(text, "config.yml")
    notices = " | ".join(loaded.notices)
    assert "plugin otai-hf-local: what it brings is built in here" in notices
    assert "plugin otai-otobo-znuny: what it brings is built in here" in notices
    assert "plugin pytest " in notices
    problems = sorted(str(p) for p in loaded.problems)
    assert problems[0].startswith("config.yml:6:7 open_ticket_ai.plugins[3]: ")
    assert "the config expects pytest <1;" in problems[0]
    assert "plugins[4]: the config expects the plugin 'no-such-distribution-xyz'" in problems[1]
    assert loaded.config.plugins == []


def test_otai_schema_accepts_the_v11_format() -> None:
    import jsonschema
    import yaml

    from open_ticket_ai.cli.schema import config_schema

    schema = config_schema()
    document = yaml.safe_load((HERE / "v11-route.yml").read_text())
    jsonschema.validate(document, schema)
    mistaken = {"otai": {"orchestrator": {"runners": []}}}  # not the format, nor ours
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(mistaken, schema)
