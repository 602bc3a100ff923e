"""`otai tickets`: add, import, list on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from open_ticket_ai.cli.main import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_add_then_list(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    code, out = invoke(
        "tickets", "--db", db, "add", "--subject", "Invoice wrong", "--priority", "high"
    )
    assert code == 0, out
    assert "created ticket 1" in out
    code, out = invoke("tickets", "--db", db, "list")
    assert code == 0, out
    assert "Invoice wrong" in out
    assert "high" in out
    assert "1 tickets" in out


def test_import_csv_and_jsonl(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("subject,body,queue,priority\nVPN down,help,,low\nLaptop,for Bob,HR,\n")
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"subject": "Rechnung falsch", "queue": "Billing"}) + "\n\n")
    assert invoke("tickets", "--db", db, "import", str(csv_file))[0] == 0
    assert invoke("tickets", "--db", db, "import", str(jsonl))[0] == 0
    code, out = invoke("tickets", "--db", db, "list", "--queue", "Billing")
    assert code == 0
    assert "Rechnung falsch" in out
    assert "VPN down" not in out
    _, everything = invoke("tickets", "--db", db, "list")
    assert "3 tickets" in everything


def test_an_invalid_row_imports_nothing_and_names_the_line(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,priority\nfine,low\n,weird\n")
    code, out = invoke("tickets", "--db", db, "import", str(bad))
    assert code == 2
    assert f"{bad}:3:" in out
    assert "unknown priority 'weird'" in out
    assert not Path(db).exists() or "0 tickets" in invoke("tickets", "--db", db, "list")[1]


def test_the_db_comes_from_the_config(tmp_path: Path) -> None:
    db = tmp_path / "from-config.sqlite"
    config = tmp_path / "config.yml"
    config.write_text(
        "services:\n"
        f"  - {{id: helpdesk, use: SqliteTicketSystem, params: {{path: '{db}'}}}}\n"
        "orchestrator: {runners: []}\n"
    )
    code, out = invoke("tickets", "--config", str(config), "add", "--subject", "x")
    assert code == 0, out
    assert db.exists()


def test_listing_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, out = invoke("tickets", "--db", str(tmp_path / "none.sqlite"), "list")
    assert code != 0
    assert "no helpdesk file" in out
