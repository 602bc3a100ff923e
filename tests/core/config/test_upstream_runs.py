"""Configs in Open Ticket AI's formats run a routing pass end to end: their helpdesk
swapped for the embedded one and their models for tiny local ones on the parsed config
(never by editing a file; no address in them is contacted), and the same pass from the
migrated config leaves the same tickets. Needs the optional ``ml`` extra."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.classification.tiny_bert import REASON, build_tiny_bert
from tests.core.config.upstream_support import (
    ABSENT,
    HERE,
    PASSWORDS,
    SHARED,
    SHARED_FILES,
    seed,
    swapped,
    tickets,
)

from open_ticket_ai import build, parse_config
from open_ticket_ai.cli.main import cli
from open_ticket_ai.core.config.loader import LoadedConfig, load_config
from open_ticket_ai.runtime.orchestrator import Orchestrator

pytest.importorskip("torch", reason=REASON)
pytest.importorskip("transformers", reason=REASON)

QUEUES = {"Billing", "HR", "IT Support", "Sales"}
PRIORITIES = {"low", "normal", "high", "urgent", "very low", "very high"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A queue model and a priority model, tiny BERTs trained on the sample tickets."""
    return (
        build_tiny_bert(tmp_path_factory.mktemp("queue-bert")),
        build_tiny_bert(tmp_path_factory.mktemp("priority-bert"), "priority"),
    )


def route(loaded: LoadedConfig, db: Path, models: tuple[Path, Path]) -> None:
    """Run the config's routing runner once on the embedded helpdesk at ``db``."""
    compiled = build(swapped(loaded, db, *models))
    [runner] = [r for r in compiled.runners if r.triggers]
    result = asyncio.run(Orchestrator(compiled).run_once(runner.id))
    assert result.succeeded, result.message


@pytest.mark.parametrize("name", ["v10-route.yml", "v11-classify.yml"])
def test_a_fixture_routes_a_ticket_and_its_migration_does_the_same(
    name: str, tmp_path: Path, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTAI_UPSTREAM_MODEL", str(models[0]))
    outcome = []
    migrated = tmp_path / "migrated.yml"
    result = CliRunner().invoke(cli, ["migrate", str(HERE / name), "-o", str(migrated)])
    assert result.exit_code == 0, result.output
    for which, load in (
        ("original", lambda: load_config(str(HERE / name))),
        ("migrated", lambda: parse_config(migrated.read_text(), str(migrated))),
    ):
        db = tmp_path / f"{which}.sqlite"
        monkeypatch.setenv("OTAI_UPSTREAM_DESK", str(db))
        seed(db, "Incoming")
        route(load(), db, models)
        [ticket] = tickets(db)
        outcome.append(ticket)
    original, again = outcome
    assert original == again
    assert original["queue"] in QUEUES  # moved out of Incoming by the model's label
    assert original["subject"] == f"[{original['queue']}] Invoice charged twice"
    [note] = original["notes"]
    assert note.startswith(f"queue {original['queue']}")
    if name.startswith("v11"):
        assert original["priority"] == "normal"  # '3 normal', the helpdesk's own name


SHARED_RUNS = {
    # file: (the queue its ticket waits in, the id it updates by, notes it adds)
    "head-configExamples-classify-text-and-set-ticket-subject.yml": ("Inbox", "1311", 0),
    "head-configExamples-fetch-addnote.yml": ("~Test-Queue1", None, 1),
    "head-configExamples-queue-priority.yml": ("Inbox", "1310", 0),
    "head-configExamples-update-ticket-subject.yml": ("Inbox", "1312", 0),
    "head-deployment-otobo_demo-config.yml": ("OpenTicketAI::Incoming", None, 2),
    "head-deployment-znuny_demo-config.yml": ("Anfrage an die IT", None, 2),
    "head-docs-users-installation-block1.yml": ("Anfrage an die IT", None, None),
}


@pytest.mark.skipif(not SHARED.is_dir(), reason=ABSENT)
def test_the_v103_config_runs_until_the_param_it_never_defines(
    tmp_path: Path, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its queue composite reads ``parent.params.success_full_high_confidence_note`` (and
    ``parent.params.ticket``), which the file defines only for the priority composite: the
    run fetches the ticket, then stops there with the place in the file, changing nothing."""
    name = "v1.0.3-tests-e2e-otobo_demo-config.yml"
    for variable, value in PASSWORDS.items():
        monkeypatch.setenv(variable, value)
    db = tmp_path / "desk.sqlite"
    seed(db, "OpenTicketAI::Incoming")
    compiled = build(swapped(load_config(str(SHARED / name)), db, *models))
    [runner] = compiled.runners
    assert runner.overlap == "queue_one"  # concurrency: {max_workers: 1, when_exhausted: wait}
    assert runner.timeout == 10
    result = asyncio.run(Orchestrator(compiled).run_once(runner.id))
    assert not result.succeeded
    assert f"{name}:77 " in result.message
    assert "has no attribute 'success_full_high_confidence_note'" in result.message
    [ticket] = tickets(db)
    assert (ticket["queue"], ticket["notes"]) == ("OpenTicketAI::Incoming", [])


@pytest.mark.skipif(not SHARED.is_dir(), reason=ABSENT)
@pytest.mark.parametrize("name", [n for n in SHARED_FILES if n in SHARED_RUNS])
def test_a_shared_upstream_config_runs_a_routing_pass(
    name: str, tmp_path: Path, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in PASSWORDS.items():
        monkeypatch.setenv(variable, value)
    queue, ticket_id, notes = SHARED_RUNS[name]
    db = tmp_path / "desk.sqlite"
    seed(db, queue, ticket_id)
    loaded = load_config(str(SHARED / name))
    assert loaded.problems == ()
    before = tickets(db)
    route(loaded, db, models)
    [ticket] = tickets(db)
    changed = {key for key in ("queue", "priority", "subject") if ticket[key] != before[0][key]}
    assert changed, ticket  # the pass changed the ticket
    if notes is not None:
        assert len(ticket["notes"]) == notes
