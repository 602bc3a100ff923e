"""``otai runs`` against ledger files filled with SqliteLedgerStore."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.runtime.ledger_behaviour import full_run, make_run, touching

from open_ticket_ai.cli.runs import runs
from open_ticket_ai.core.pipes.records import Decision
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import RunRecord, SqliteLedgerStore

NOW = time.time()


@pytest.fixture(autouse=True)
def _now() -> None:
    """Times relative to the test's own start: ``--since 2m`` must not age while the rest
    of the suite runs."""
    global NOW
    NOW = time.time()


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "OTAI_CONFIG", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def fill(path: Path, records: list[RunRecord]) -> Path:
    store = SqliteLedgerStore(path)
    store.append(records)
    store.close()
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(runs, list(args), env={"COLUMNS": "200", **(env or {})})


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return fill(
        tmp_path / "ledger.sqlite",
        [
            make_run("fetch-1", started=NOW - 7200, duration=0.25),
            make_run(
                "fetch-2",
                started=NOW - 600,
                duration=3.5,
                outcome=RunOutcome.FAILED,
                error="connection refused by otrs.example.com [errno 111]\nTraceback ...",
            ),
            touching("route-1", "42", "otrs", started=NOW - 300),
            full_run("route-2", started=NOW - 60),
        ],
    )


def lines_of(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


# -- list ---------------------------------------------------------------------------------


def test_list_shows_the_runs_newest_first(ledger: Path) -> None:
    result = invoke("list", "--ledger", str(ledger))
    assert result.exit_code == 0, result.output
    rows = lines_of(result)
    header = rows[0].split()
    assert header == [
        "run",
        "runner",
        "trigger",
        "started",
        "duration",
        "status",
        "actions",
        "decisions",
        "error",
    ]
    assert [row.split()[0] for row in rows[1:]] == ["route-2", "route-1", "fetch-2", "fetch-1"]
    route_2 = rows[1]
    assert "route" in route_2
    assert "helpdesk_hook" in route_2
    assert datetime.fromtimestamp(NOW - 60).strftime("%Y-%m-%d %H:%M:%S") in route_2
    assert "2.75s" in route_2
    assert route_2.split()[6:9] == ["failed", "4", "2"]
    assert "250ms" in rows[4]
    assert "connection refused by otrs.example.com [errno 111]" in rows[3]
    assert "Traceback" not in result.output  # the error's first line only


def test_list_filters(ledger: Path) -> None:
    def listed(*args: str) -> list[str]:
        result = invoke("list", "--ledger", str(ledger), *args)
        assert result.exit_code == 0, result.output
        return [row.split()[0] for row in lines_of(result)[1:]]

    assert listed("--runner", "fetch") == ["fetch-2", "fetch-1"]
    assert listed("--status", "failed") == ["route-2", "fetch-2"]
    assert listed("--status", "failed", "--runner", "fetch") == ["fetch-2"]
    assert listed("--since", "1h") == ["route-2", "route-1", "fetch-2"]
    assert listed("--since", "2m") == ["route-2"]
    assert listed("--limit", "2") == ["route-2", "route-1"]


def test_list_with_no_match_says_so(ledger: Path) -> None:
    result = invoke("list", "--ledger", str(ledger), "--runner", "nobody")
    assert result.exit_code == 0
    assert f"no runs match in {ledger}" in result.output


def test_list_refuses_a_bad_status_and_duration(ledger: Path) -> None:
    result = invoke("list", "--ledger", str(ledger), "--status", "exploded")
    assert result.exit_code == 2
    assert "succeeded" in result.output
    result = invoke("list", "--ledger", str(ledger), "--since", "soon")
    assert result.exit_code == 2
    assert "invalid duration" in result.output


def test_list_json_is_one_document_with_utc_times(ledger: Path) -> None:
    result = invoke("list", "--ledger", str(ledger), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [run["run_id"] for run in document] == ["route-2", "route-1", "fetch-2", "fetch-1"]
    first = document[0]
    started = datetime.fromisoformat(first["started"])
    assert started.utcoffset() is not None
    assert started.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert started.timestamp() == pytest.approx(NOW - 60)
    assert datetime.fromisoformat(first["scheduled"]).timestamp() == pytest.approx(NOW - 60.5)
    assert first["outcome"] == "failed"
    assert first["duration"] == pytest.approx(2.75)
    assert len(first["actions"]) == 4
    assert document[3]["scheduled"] is None


# -- show ---------------------------------------------------------------------------------


def test_show_prints_fields_steps_actions_and_decisions(ledger: Path) -> None:
    result = invoke("show", "route-2", "--ledger", str(ledger))
    assert result.exit_code == 0, result.output
    out = result.output
    record = full_run("route-2", started=NOW - 60)
    for text in (
        "route-2",
        "helpdesk_hook",
        "failed",
        "2.75s",
        "1234 bytes",
        "dry run",
        "step notify: HTTP 503 from https://chat.example.com/hooks",
        "orchestrator.runners[0].run.steps[1]",
        "update_each",
        "3 succeeded, 1 failed",
        "1 of 4 items failed",
    ):
        assert text in out, text
    for action in record.actions:
        assert action.describe() in out
    for decision in record.decisions:
        assert decision.describe() in out
    assert "pw@" not in out
    assert "[auto]" in out  # markup-like text in data is printed as is
    steps = [line for line in out.splitlines() if line.startswith(("classify", "update_each"))]
    assert len(steps) == 2
    assert "3" in next(line for line in out.splitlines() if line.startswith("notify")).split()


def test_show_json_is_an_object(ledger: Path) -> None:
    result = invoke("show", "route-2", "--ledger", str(ledger), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["run_id"] == "route-2"
    assert document["steps"][1]["items"] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert document["actions"][0]["changes"] == {
        "queue": ["Incoming", "Billing"],
        "priority": [3, 4],
    }
    assert document["actions"][0]["kind"] == "ticket_updated"
    assert document["actions"][0]["dry_run"] is True
    assert document["decisions"][0]["top"][0] == ["Billing", 0.91]
    assert document["decisions"][1]["below_threshold"] is True
    ended = datetime.fromisoformat(document["ended"])
    assert ended.utcoffset() is not None
    assert ended.timestamp() == pytest.approx(NOW - 60 + 2.75)


def test_show_an_unknown_run_names_it_and_the_ledger(ledger: Path) -> None:
    result = invoke("show", "route-99", "--ledger", str(ledger))
    assert result.exit_code == 1
    assert "route-99" in result.output
    assert str(ledger) in result.output


# -- tickets ------------------------------------------------------------------------------


def test_tickets_lists_every_action_and_decision_newest_first(ledger: Path) -> None:
    result = invoke("tickets", "42", "--ledger", str(ledger))
    assert result.exit_code == 0, result.output
    lines = lines_of(result)
    assert lines[0].split() == ["at", "run", "runner", "what"]
    starts = [n for n, line in enumerate(lines) if re.match(r"\d{4}-\d\d-\d\d ", line)]
    entries = [
        "\n".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)
    ]
    assert [entry.split()[2] for entry in entries] == ["route-2"] * 4 + ["route-1"] * 2
    assert "would add note ticket 42" in entries[0]
    assert "would update ticket 42: queue 'Incoming' -> 'Billing'" in entries[1]
    assert "in otrs, orchestrator.runners[0].run.steps[1]" in entries[1]
    assert "priority-model says 'high' (0.40), below threshold -> 3" in entries[2]
    assert "queue-model says 'Billing' (0.91)" in entries[3]
    assert "update ticket 42: queue 'Inbox' -> 'Billing'" in entries[4]
    assert "m says 'Billing' (0.90)" in entries[5]


def test_tickets_filters_by_system_and_prints_json(tmp_path: Path) -> None:
    path = fill(
        tmp_path / "ledger.sqlite",
        [
            touching("route-1", "42", "otrs", started=NOW - 100),
            touching("route-2", "42", "zammad", started=NOW - 50),
        ],
    )
    result = invoke("tickets", "42", "--system", "zammad", "--ledger", str(path), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [(e["run_id"], e["action"] is not None) for e in document] == [
        ("route-2", True),
        ("route-2", False),
    ]
    assert document[0]["action"]["system"] == "zammad"
    assert document[0]["decision"] is None
    assert document[1]["decision"]["label"] == "Billing"
    assert datetime.fromisoformat(document[0]["at"]).timestamp() == pytest.approx(NOW - 50 + 0.25)


def test_tickets_of_an_untouched_ticket_says_so(ledger: Path) -> None:
    result = invoke("tickets", "9999", "--ledger", str(ledger))
    assert result.exit_code == 0
    assert "nothing recorded on ticket 9999" in result.output


# -- finding the ledger -------------------------------------------------------------------


def test_config_default_ledger_is_beside_the_config(tmp_path: Path) -> None:
    config = tmp_path / "svc" / "config.yml"
    config.parent.mkdir()
    config.write_text("orchestrator:\n  runners: []\n")
    fill(tmp_path / "svc" / "var" / "otai-ledger.sqlite", [make_run("fetch-1", started=NOW)])
    result = invoke("list", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "fetch-1" in result.output


def test_config_ledger_path_is_relative_to_the_config(tmp_path: Path) -> None:
    config = tmp_path / "svc" / "config.yml"
    config.parent.mkdir()
    config.write_text(
        "open_ticket_ai:\n"
        "  orchestrator:\n"
        "    ledger:\n"
        "      path: data/runs.sqlite\n"
        "      retention: 7d\n"
        "    runners: []\n"
    )
    fill(tmp_path / "svc" / "data" / "runs.sqlite", [make_run("fetch-1", started=NOW)])
    result = invoke("show", "fetch-1", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "fetch-1" in result.output


def test_config_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"orchestrator:\n  ledger: {{path: {tmp_path / 'abs.sqlite'}}}\n")
    fill(tmp_path / "abs.sqlite", [make_run("fetch-1", started=NOW)])
    result = invoke("list", env={"OTAI_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert "fetch-1" in result.output


def test_bare_runners_config_uses_the_default(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("runners:\n  - id: a\n    run: {id: x, use: SomePipe}\n")
    fill(tmp_path / "var" / "otai-ledger.sqlite", [make_run("fetch-1", started=NOW)])
    result = invoke("list", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    assert [run["run_id"] for run in json.loads(result.output)] == ["fetch-1"]


def test_no_ledger_file_yet_says_no_run_was_recorded(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("orchestrator:\n  runners: []\n")
    result = invoke("list", "--config", str(config))
    assert result.exit_code == 1
    assert str(tmp_path / "var" / "otai-ledger.sqlite") in result.output
    assert "no run has been recorded there yet" in result.output
    assert not (tmp_path / "var").exists()  # reading never creates the ledger


def test_a_ledger_turned_off_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("orchestrator:\n  ledger: false\n  runners: []\n")
    result = invoke("list", "--config", str(config))
    assert result.exit_code == 1
    assert "turns the ledger off" in result.output


def test_a_missing_or_broken_config_exits_2(tmp_path: Path) -> None:
    result = invoke("list", "--config", str(tmp_path / "nope.yml"))
    assert result.exit_code == 2
    assert "nope.yml not found" in result.output
    broken = tmp_path / "broken.yml"
    broken.write_text("orchestrator: [unclosed\n")
    result = invoke("list", "--config", str(broken))
    assert result.exit_code == 2
    assert "broken.yml" in result.output


def test_a_file_that_is_not_a_ledger_is_named(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tickets (id INTEGER)")
    db.close()
    result = invoke("list", "--ledger", str(path))
    assert result.exit_code == 1
    assert f"{path} is not a run ledger" in result.output


def test_reading_while_a_writer_has_the_ledger_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    writer = SqliteLedgerStore(path)
    try:
        writer.append([make_run("fetch-1", started=NOW - 1)])
        first = invoke("list", "--ledger", str(path), "--json")
        writer.append(
            [
                make_run(
                    "fetch-2",
                    started=NOW,
                    decisions=[Decision(model="m", label="x", confidence=0.5, ticket_id="7")],
                )
            ]
        )
        second = invoke("list", "--ledger", str(path), "--json")
    finally:
        writer.close()
    assert [run["run_id"] for run in json.loads(first.output)] == ["fetch-1"]
    assert [run["run_id"] for run in json.loads(second.output)] == ["fetch-2", "fetch-1"]


def test_a_narrow_terminal_lists_errors_under_the_table(ledger: Path) -> None:
    result = invoke("list", "--ledger", str(ledger), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    assert "error" not in lines_of(result)[0]
    assert "fetch-2: connection refused by otrs.example.com [errno 111]" in result.output
    assert "route-2: step notify: HTTP 503" in result.output
