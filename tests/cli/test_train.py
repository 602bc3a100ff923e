"""The ``train`` command, run through click's CliRunner."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.classification.support import training_tickets

from open_ticket_ai.classification import SavedModel, SklearnClassifier
from open_ticket_ai.cli.train import train_command
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(train_command, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_train_from_a_csv_prints_accuracy_per_class_and_the_confusion_matrix(
    tmp_path: Path,
) -> None:
    data = tmp_path / "tickets.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "body", "queue"])
        writer.writerows([t.subject, t.body, t.queue] for t in training_tickets()[:200])
    output = tmp_path / "queue.joblib"
    code, out = invoke(str(data), "--label", "queue", "-o", str(output), "--folds", "3")
    assert code == 0, out
    assert f"Read 200 examples of 4 labels from {data}" in out
    assert "Training" in out
    assert "Cross-validated accuracy: " in out
    assert "(3 folds, 200 examples)" in out
    assert "label       examples  accuracy  precision" in out
    assert "Confusion matrix (rows: true label, columns: predicted)" in out
    matrix = out.split("Confusion matrix")[1].splitlines()[1:6]
    assert matrix[0].split() == ["Billing", "HR", "IT", "Support", "Sales"]
    assert [row.split()[0] for row in matrix[1:]] == ["Billing", "HR", "IT", "Sales"]
    assert f"Saved {output} (4 labels: Billing, HR, IT Support, Sales)" in out
    model = SavedModel.load(output)
    assert model.metrics is not None
    assert model.metrics.samples == 200
    assert SklearnClassifier(model).predict(["Die Rechnung ist falsch"])[0].label == "Billing"


def test_train_from_a_jsonl_file_without_cross_validation(tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    rows = [{"text": t.text, "label": t.priority.label} for t in training_tickets()[:120]]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "priority.joblib"
    code, out = invoke(str(data), "-o", str(output), "--folds", "0")
    assert code == 0, out
    assert "Cross-validated" not in out
    assert SavedModel.load(output).labels == ("high", "low", "normal", "very high")


def test_train_on_the_sample_tickets(tmp_path: Path) -> None:
    output = tmp_path / "demo.joblib"
    code, out = invoke("--demo", "--label", "priority", "-o", str(output), "--folds", "2")
    assert code == 0, out
    assert "Read 400 examples of 4 labels from the sample tickets" in out
    assert "very high" in out


def test_train_from_a_ticket_system_in_a_config(tmp_path: Path) -> None:
    database = tmp_path / "helpdesk.sqlite"

    async def fill() -> None:
        system = SqliteTicketSystem(SqliteParams(path=str(database)))
        await system.open()
        for ticket in training_tickets()[:150]:
            await system.create(ticket.as_new_ticket())
        await system.close()

    asyncio.run(fill())
    config = tmp_path / "config.yml"
    config.write_text(
        "services:\n"
        "  - id: helpdesk\n"
        '    use: "open_ticket_ai.tickets.adapters.sqlite:SqliteTicketSystem"\n'
        f'    params: {{path: "{database}"}}\n'
        "orchestrator:\n"
        "  runners:\n"
        "    - {id: r, run: {id: x, use: ExpressionPipe, params: {expression: 1}}}\n"
    )
    output = tmp_path / "model.joblib"
    args = ["--config", str(config), "--service", "helpdesk", "-o", str(output), "--folds", "3"]
    code, out = invoke(*args, "--limit", "120")
    assert code == 0, out
    assert "Read 120 examples of 4 labels from service 'helpdesk'" in out
    assert output.is_file()

    code, out = invoke("--config", str(config), "--service", "nope", "-o", str(output))
    assert code == 2
    assert "no ticket-system service 'nope' in the config (ticket systems: helpdesk)" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give exactly one of DATA, --service or --demo"),
        (["--demo", "--service", "x"], "(got --service and --demo)"),
        (["--demo", "--label", "state"], "with --demo, --label is queue or priority"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], says: str) -> None:
    code, out = invoke(*args, "-o", str(tmp_path / "m.joblib"))
    assert code == 2
    assert says in out


def test_bad_training_data_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "one-label.csv"
    data.write_text("text,label\nprinter,IT\nlaptop,IT\n")
    code, out = invoke(str(data), "-o", str(tmp_path / "m.joblib"))
    assert code == 1
    assert "Error: training needs examples of at least 2 labels" in out
    assert "Traceback" not in out
    assert not (tmp_path / "m.joblib").exists()
