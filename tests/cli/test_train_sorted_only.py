"""`otai train --service` learns only from sorted tickets: the queues the config's
FetchTicketsPipe steps read, and those named with --exclude-queue, are left out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.classification.support import training_tickets

from open_ticket_ai.classification import SavedModel
from open_ticket_ai.cli.train import sorted_examples, train_command
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket

SORTED = 120
WAITING = {"Incoming": 14, "Waiting": 4, "Spam": 3}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(train_command, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


async def _fill(database: Path) -> None:
    system = SqliteTicketSystem(SqliteParams(path=str(database)))
    await system.open()
    try:
        samples = iter(training_tickets())
        for _ in range(SORTED):
            await system.create(next(samples).as_new_ticket())
        for queue, count in WAITING.items():
            for _ in range(count):
                ticket = next(samples).as_new_ticket()
                await system.create(ticket.model_copy(update={"queue": queue}))
    finally:
        await system.close()


ROUTING_RUNNERS = """\
    - id: route
      run:
        id: routing
        steps:
          - id: fetch
            use: FetchTicketsPipe
            params: {ticket_system: helpdesk, queue: Incoming, limit: 50}
    - id: triage
      run:
        id: triage
        steps:
          - id: fetch
            use: FetchTicketsPipe
            params:
              ticket_system: helpdesk
              queue: "{{ env.OTAI_TRIAGE_QUEUE | default('Triage') }}"
          - id: each
            for_each: "{{ ['A', 'B'] }}"
            use: FetchTicketsPipe
            params: {ticket_system: helpdesk, queue: "{{ item }}"}
"""
PLAIN_RUNNERS = "    - {id: r, run: {id: x, use: ExpressionPipe, params: {expression: 1}}}\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    asyncio.run(_fill(tmp_path / "helpdesk.sqlite"))
    return tmp_path


def write_config(site: Path, runners: str) -> Path:
    config = site / "config.yml"
    config.write_text(
        "services:\n"
        "  - id: helpdesk\n"
        "    use: SqliteTicketSystem\n"
        f'    params: {{path: "{site / "helpdesk.sqlite"}"}}\n'
        "orchestrator:\n"
        "  runners:\n" + runners
    )
    return config


def test_the_queues_the_routing_reads_and_excluded_ones_are_left_out(site: Path) -> None:
    config = write_config(site, ROUTING_RUNNERS)
    output = site / "model.otai"
    args = ["--config", str(config), "--service", "helpdesk", "-o", str(output), "--folds", "2"]
    code, out = invoke(*args, "--exclude-queue", "Spam", env={"OTAI_TRIAGE_QUEUE": "Waiting"})
    assert code == 0, out
    assert "Excluded queue 'Incoming' (read by runner 'route'): 14 tickets left out" in out
    assert "Excluded queue 'Waiting' (read by runner 'triage'): 4 tickets left out" in out
    assert "Excluded queue 'Spam' (--exclude-queue): 3 tickets left out" in out
    assert "Not excluded: the queue of " in out
    assert "(runner 'triage') is known only when it runs" in out
    assert f"Read {SORTED} examples of 4 labels from service 'helpdesk'" in out
    assert SavedModel.load(output).labels == ("Billing", "HR", "IT Support", "Sales")


def test_a_queue_read_by_the_routing_and_named_again_is_listed_once(site: Path) -> None:
    config = write_config(site, ROUTING_RUNNERS)
    output = site / "model.otai"
    args = ["--config", str(config), "--service", "helpdesk", "-o", str(output), "--folds", "0"]
    code, out = invoke(*args, "--exclude-queue", "Incoming", "--limit", "50")
    assert code == 0, out
    assert out.count("Excluded queue 'Incoming'") == 1
    assert "(read by runner 'route', --exclude-queue)" in out
    # The triage runner's queue defaults to Triage, where no ticket is.
    assert "Excluded queue 'Triage' (read by runner 'triage'): 0 tickets left out" in out
    assert "Read 50 examples" in out


def test_without_fetching_runners_every_queue_is_learnt(site: Path) -> None:
    config = write_config(site, PLAIN_RUNNERS)
    output = site / "model.otai"
    args = ["--config", str(config), "--service", "helpdesk", "-o", str(output), "--folds", "0"]
    code, out = invoke(*args)
    assert code == 0, out
    assert "Excluded queue" not in out
    assert f"Read {SORTED + sum(WAITING.values())} examples of 7 labels" in out
    assert "Incoming" in SavedModel.load(output).labels


def test_exclude_queue_needs_service(tmp_path: Path) -> None:
    code, out = invoke("--demo", "--exclude-queue", "Incoming", "-o", str(tmp_path / "m"))
    assert code == 2
    assert "--exclude-queue needs --service" in out


def test_a_broken_config_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("services: [\n")
    code, out = invoke("--config", str(config), "--service", "x", "-o", str(tmp_path / "m"))
    assert code == 2
    assert str(config) in out


async def test_a_corrected_ticket_is_kept_in_an_excluded_queue(site: Path) -> None:
    system = SqliteTicketSystem(SqliteParams(path=str(site / "helpdesk.sqlite")))
    await system.open()
    try:
        waiting = await system.create(NewTicket(subject="Rechnung doppelt", queue="Incoming"))
        examples, left_out = await sorted_examples(
            system,
            label="queue",
            corrections={waiting.id: "Billing"},
            excluded={"Incoming", "Spam"},
        )
    finally:
        await system.close()
    assert ("Rechnung doppelt", "Billing") in examples
    assert left_out == {"Incoming": WAITING["Incoming"], "Spam": WAITING["Spam"]}
    assert len(examples) == SORTED + WAITING["Waiting"] + 1
    assert {label for _, label in examples} == {"Billing", "HR", "IT Support", "Sales", "Waiting"}
