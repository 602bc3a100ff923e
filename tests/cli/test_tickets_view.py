"""`otai tickets list` filters and --wide, `show`, `stats` and `--config`, on real SQLite files."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from open_ticket_ai.cli.main import cli
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, Note, TicketChanges

ROOT = Path(__file__).resolve().parents[2]
ROUTING = ROOT / "examples" / "ticket-routing.yml"
ROUTING_NOTE = (
    "open-ticket-ai: queue Billing (91% sure), priority high (70% sure).\n\n[otai:routing]"
)
LONG_LINE = "The customer called back: " + " ".join(f"word{i}" for i in range(60)) + " END."


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "100", **(env or {})})
    return result.exit_code, result.output


async def _fill(db: Path) -> None:
    """1 Billing, routed; 2 Billing, old and not routed; 3 HR, open, a person's note;
    4 Sales, a note that only mentions a marker; 5 Review, routed but a human would say HR."""
    system = SqliteTicketSystem(SqliteParams(path=str(db)))
    await system.open()
    try:
        specs = [
            ("Invoice twice", "Billing", "Billing"),
            ("Old refund", "Billing", None),
            ("Parental leave", "HR", None),
            ("Quote please", "Sales", "Sales"),
            ("Something odd", "Review", "HR"),
        ]
        for subject, queue, expected in specs:
            fields = {"expected_queue": expected} if expected else {}
            await system.create(
                NewTicket(
                    subject=subject,
                    body=f"Body of {subject}.\nSecond line.",
                    queue=queue,
                    custom_fields=fields,
                )
            )
        await system.add_note("1", Note(body=ROUTING_NOTE))
        await system.update("3", TicketChanges(state="open"))
        await system.add_note("3", Note(body="Called the customer.\n" + LONG_LINE, subject="agent"))
        await system.add_note("4", Note(body="we could add [otai:x] markers one day"))
        await system.add_note("5", Note(body="open-ticket-ai: queue Review\n\n[otai:routing]"))
    finally:
        await system.close()
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE tickets SET created = ?, updated = ? WHERE id = 2",
            ("2020-01-01T00:00:00.000000+00:00", "2020-01-01T00:00:00.000000+00:00"),
        )


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "helpdesk.sqlite"
    asyncio.run(_fill(path))
    return str(path)


def listed_ids(out: str) -> list[str]:
    """The ids in the first column of a `list` table (the count line below it left out)."""
    rows = [line.split() for line in out.splitlines()[:-1]]
    return [row[0] for row in rows if row and row[0].isdigit()]


def test_list_filters_by_queue_state_since_and_routed(db: str) -> None:
    cases = {
        (): ["1", "2", "3", "4", "5"],
        ("--queue", "Billing"): ["1", "2"],
        ("--state", "open"): ["3"],
        ("--routed",): ["1", "5"],
        ("--routed", "--queue", "Billing"): ["1"],
        ("--since", "2h"): ["1", "3", "4", "5"],
        ("--since", "2021-06-01"): ["1", "3", "4", "5"],
        ("--since", "2019-12-31T23:00:00+00:00"): ["1", "2", "3", "4", "5"],
        ("--since", "2999-01-01T00:00"): [],
        ("--limit", "2"): ["4", "5"],
    }
    for args, ids in cases.items():
        code, out = invoke("tickets", "--db", db, "list", *args)
        assert code == 0, out
        assert listed_ids(out) == ids, (args, out)
    assert "2 of 5 tickets (the newest" in invoke("tickets", "--db", db, "list", "--limit", "2")[1]
    assert invoke("tickets", "--db", db, "list", "--routed")[1].splitlines()[-1] == "2 tickets"


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01", "-2h"])
def test_a_bad_since_is_a_usage_error(db: str, since: str) -> None:
    code, out = invoke("tickets", "--db", db, "list", "--since", since)
    assert code == 2
    assert "Invalid value for '--since'" in out


def test_list_cuts_notes_to_fit_unless_wide(db: str) -> None:
    code, out = invoke("tickets", "--db", db, "list", "--state", "open")
    assert code == 0, out
    assert "Called the customer." in out
    assert LONG_LINE not in out
    assert max(len(line) for line in out.splitlines()) <= 100

    code, out = invoke("tickets", "--db", db, "list", "--state", "open", "--wide")
    assert code == 0, out
    assert "Called the customer." in out
    assert LONG_LINE in out
    code, out = invoke("tickets", "--db", db, "list", "--queue", "Billing", "--wide")
    assert "[otai:routing]" in out  # markup-like text is shown as it is


def shown_fields(out: str) -> dict[str, str]:
    """The `name:  value` lines `show` prints above the body."""
    head = out.split("\n--- body")[0]
    return {
        name: value.strip()
        for name, value in (line.split(":", 1) for line in head.splitlines() if ":" in line)
    }


def test_show_prints_every_field_and_every_note(db: str) -> None:
    code, out = invoke("tickets", "--db", db, "show", "3")
    assert code == 0, out
    fields = shown_fields(out)
    assert fields["id"] == "3"
    assert fields["subject"] == "Parental leave"
    assert fields["queue"] == "HR"
    assert fields["priority"] == "normal"
    assert fields["state"] == "open"
    assert fields["routed"] == "no"
    assert set(fields) >= {"requester", "created", "updated"}
    assert "--- body ---\nBody of Parental leave.\nSecond line.\n" in out
    assert "1 note\n" in out
    assert f"Called the customer.\n{LONG_LINE}" in out
    assert "subject 'agent'" in out

    code, out = invoke("tickets", "--db", db, "show", "5")
    assert code == 0, out
    fields = shown_fields(out)
    assert fields["expected_queue (custom field)"] == "HR"
    assert fields["routed"] == "yes"
    assert "open-ticket-ai: queue Review\n\n[otai:routing]" in out


@pytest.mark.parametrize("ticket_id", ["42", "abc"])
def test_show_of_an_unknown_ticket_is_a_one_line_error(db: str, ticket_id: str) -> None:
    code, out = invoke("tickets", "--db", db, "show", ticket_id)
    assert code == 1
    assert out.strip() == f"Error: no ticket {ticket_id!r} in {db}"


def test_stats_counts_queues_and_routed_tickets_in_their_expected_queue(db: str) -> None:
    code, out = invoke("tickets", "--db", db, "stats")
    assert code == 0, out
    by_queue = out.split("Routed tickets by expected queue")[0]
    rows = {line.split()[0]: line.split()[1:] for line in by_queue.splitlines() if line.split()}
    assert rows["Billing"][:2] == ["2", "40.0%"]
    assert rows["HR"][:2] == ["1", "20.0%"]
    assert rows["Review"][:2] == ["1", "20.0%"]
    # Routed with an expected queue: 1 (Billing, right) and 5 (expected HR, in Review);
    # 4 names one but is not routed (its note only mentions a marker).
    assert "1 of 2 routed tickets landed in their expected queue (50.0%" in out
    assert "1 more wait to be routed" in out


def test_stats_without_expected_queues_says_so(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    assert invoke("tickets", "--db", db, "add", "--subject", "x", "--queue", "HR")[0] == 0
    code, out = invoke("tickets", "--db", db, "stats")
    assert code == 0, out
    assert "No routed tickets with an expected queue (custom field expected_queue)." in out


def test_reading_commands_never_create_a_helpdesk(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    for command in (["list"], ["show", "1"], ["stats"]):
        code, out = invoke("tickets", "--db", str(missing), *command)
        assert code == 1, out
        assert f"no helpdesk file at {missing}" in out
    assert not missing.exists()


def test_the_config_is_rendered_before_its_path_is_taken(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "services:\n"
        "  - id: helpdesk\n"
        "    use: SqliteTicketSystem\n"
        "    params: {path: \"{{ env.OTAI_TEST_DIR | default('nowhere') }}/desk.sqlite\"}\n"
        "orchestrator: {runners: []}\n"
    )
    (tmp_path / "here").mkdir()  # a helpdesk is made only in a directory that exists
    env = {"OTAI_TEST_DIR": str(tmp_path / "here")}
    code, out = invoke("tickets", "--config", str(config), "add", "--subject", "VPN", env=env)
    assert code == 0, out
    assert (tmp_path / "here" / "desk.sqlite").is_file()
    code, out = invoke("tickets", "--config", str(config), "list", env=env)
    assert code == 0, out
    assert "VPN" in out
    assert not list(tmp_path.glob("*{{*"))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "config file not found"),
        ("services: [\n", "config.yml"),
        (
            "services:\n  - {id: h, use: SqliteTicketSystem, params: {path: '{{ env.X | nope }}'}}"
            "\norchestrator: {runners: []}\n",
            "No filter named 'nope'",
        ),
        (
            "services: []\norchestrator: {runners: []}\n",
            "no SqliteTicketSystem service (services: none)",
        ),
    ],
    ids=["missing", "broken-yaml", "broken-template", "no-helpdesk"],
)
def test_a_bad_config_is_an_error_not_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.yml"
    if text is not None:
        config.write_text(text)
    for command in (["list"], ["add", "--subject", "x"]):
        code, out = invoke("tickets", "--config", str(config), *command)
        assert code == 2, out
        assert says in out
        assert str(config) in out
    assert not (tmp_path / "otai-helpdesk.sqlite").exists()


def test_help_reads_no_config(tmp_path: Path) -> None:
    code, out = invoke("tickets", "--config", str(tmp_path / "missing.yml"), "list", "--help")
    assert code == 0, out
    assert "--routed" in out


def _otai(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "OTAI_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "open_ticket_ai", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={**full, **env},
    )


@pytest.fixture(scope="module")
def prepared_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`otai demo setup`: a helpdesk with 10 tickets waiting in Incoming, and two models."""
    demo = tmp_path_factory.mktemp("prepared-demo") / "demo"
    setup = ("demo", "setup", "--dir", str(demo), "--tickets", "150", "--incoming", "10")
    done = _otai(*setup, cwd=demo.parent, env={})
    assert done.returncode == 0, done.stderr
    return demo


def route_once(prepared: Path, site: Path, threshold: str = "0.5") -> dict[str, str]:
    """A copy of the demo in ``site`` with the main job's config (its queue threshold set
    to ``threshold``) as ./config.yml, after one run of the route runner."""
    shutil.copytree(prepared, site / "demo")
    text = ROUTING.read_text()
    assert "threshold: 0.5\n" in text
    (site / "config.yml").write_text(text.replace("threshold: 0.5\n", f"threshold: {threshold}\n"))
    env = {"OTAI_DEMO_DIR": str(site / "demo")}
    done = _otai("run", "--once", "route", "config.yml", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    return env


def test_stats_and_routed_on_the_demo_through_its_config(
    prepared_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = route_once(prepared_demo, tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out = invoke("tickets", "list", "--routed", env=env)  # ./config.yml
    assert code == 0, out
    assert out.splitlines()[-1] == "10 tickets"
    code, out = invoke("tickets", "--config", "config.yml", "stats", env=env)
    assert code == 0, out
    summary = out.splitlines()[-1]
    assert " of 10 routed tickets landed in their expected queue (" in summary
    landed = int(summary.split()[0])
    assert 6 <= landed <= 10
    assert f"({landed / 10:.1%}" in summary
    assert "Incoming" not in out  # every waiting ticket was routed


def test_a_low_confidence_note_names_the_best_guess_and_the_threshold(
    prepared_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = route_once(prepared_demo, tmp_path, threshold="0.995")
    monkeypatch.chdir(tmp_path)
    code, out = invoke("tickets", "list", "--routed", "--wide", "--queue", "Review", env=env)
    assert code == 0, out
    assert out.splitlines()[-1] == "10 tickets"
    notes = re.findall(
        r"open-ticket-ai: queue Review \(best guess ([A-Za-z ]+), (\d+)% sure, below the "
        r"threshold 99\.5%\), priority [a-z ]+ \(\d+% sure\)\.",
        out,
    )
    assert len(notes) == 10, out
    assert {guess for guess, _ in notes} <= {"IT Support", "Billing", "Sales", "HR"}
    assert all(int(sure) <= 99 for _, sure in notes)
