"""Training data from CSV and JSONL files, and from tickets already sorted in a helpdesk."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.classification.support import held_out_tickets, training_tickets

from open_ticket_ai.classification import (
    ClassificationError,
    SklearnClassifier,
    examples_from_tickets,
    read_examples,
    train,
)
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import TicketChanges, TicketSearch


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def held_out_accuracy(model_examples: list[tuple[str, str]]) -> float:
    classifier = SklearnClassifier(train(model_examples, folds=0))
    held_out = held_out_tickets()[:100]
    predictions = classifier.predict([t.text for t in held_out])
    return sum(p.label == t.queue for p, t in zip(predictions, held_out, strict=True)) / 100


def test_training_from_a_csv_file_with_subject_and_body(tmp_path: Path) -> None:
    rows = [
        {"subject": t.subject, "body": t.body, "queue": t.queue, "priority": t.priority.label}
        for t in training_tickets()[:300]
    ]
    rows.append({"subject": "unsorted", "body": "no label yet", "queue": "", "priority": ""})
    path = write_csv(tmp_path / "tickets.csv", rows)
    examples = read_examples(path, label="queue")
    assert len(examples) == 300  # the unlabelled row is skipped
    first = training_tickets()[0]
    assert examples[0] == (first.text, first.queue)
    assert held_out_accuracy(examples) >= 0.8


def test_a_csv_with_a_text_column_and_chosen_fields(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "data.csv",
        [{"text": "printer broken", "title": "Drucker", "label": "IT"}] * 2,
    )
    assert read_examples(path) == [("printer broken", "IT")] * 2
    assert (
        read_examples(path, text_fields=["title", "text"])
        == [("Drucker\n\nprinter broken", "IT")] * 2
    )


def test_a_missing_column_names_the_file_line_and_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", [{"text": "x", "queue": "IT"}])
    with pytest.raises(ClassificationError) as caught:
        read_examples(path)
    assert str(caught.value) == f"{path}:2: no 'label' (it has: 'text', 'queue')"


def test_training_from_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    lines = [json.dumps({"text": t.text, "label": t.queue}) for t in training_tickets()[:300]]
    path.write_text("\n".join(lines[:150]) + "\n\n" + "\n".join(lines[150:]) + "\n")
    examples = read_examples(path)
    assert len(examples) == 300
    assert held_out_accuracy(examples) >= 0.8


def test_bad_jsonl_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(ClassificationError, match=r"bad\.jsonl:2: not JSON"):
        read_examples(path)
    path.write_text('["a", "x"]\n')
    with pytest.raises(ClassificationError, match=r"bad\.jsonl:1: expected a JSON object"):
        read_examples(path)


def test_unsupported_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ClassificationError, match=r"must be a \.csv or \.jsonl"):
        read_examples(tmp_path / "data.xlsx")
    with pytest.raises(ClassificationError, match="cannot read training data"):
        read_examples(tmp_path / "absent.csv")


@pytest.fixture
async def helpdesk(tmp_path: Path) -> AsyncIterator[SqliteTicketSystem]:
    system = SqliteTicketSystem(SqliteParams(path=str(tmp_path / "helpdesk.sqlite")), id="db")
    await system.open()
    for ticket in training_tickets()[:250]:
        await system.create(ticket.as_new_ticket())
    yield system
    await system.close()


async def test_training_from_tickets_sorted_in_a_helpdesk(helpdesk: SqliteTicketSystem) -> None:
    examples = await examples_from_tickets(helpdesk, search=TicketSearch(limit=40))
    assert len(examples) == 250  # seven pages of 40, the last one short
    expected = training_tickets()[:250]
    assert Counter(label for _, label in examples) == Counter(t.queue for t in expected)
    assert {text for text, _ in examples} == {t.text for t in expected}
    assert held_out_accuracy(examples) >= 0.8


async def test_tickets_give_priorities_custom_fields_and_limits(
    helpdesk: SqliteTicketSystem,
) -> None:
    priorities = await examples_from_tickets(helpdesk, label="priority", limit=30)
    assert len(priorities) == 30
    assert {label for _, label in priorities} <= {"low", "normal", "high", "very high"}
    await helpdesk.update("1", TicketChanges(custom_fields={"category": "hardware"}))
    custom = await examples_from_tickets(helpdesk, label="category")
    assert [label for _, label in custom] == ["hardware"]  # unlabelled tickets are skipped
    billing = await examples_from_tickets(helpdesk, search=TicketSearch(queue="Billing"))
    assert billing
    assert {label for _, label in billing} == {"Billing"}
