"""Training the scikit-learn classifier: from (text, label) pairs, a CSV or JSONL file, or the
tickets already sorted in a helpdesk; cross-validated per-class accuracy and a confusion matrix
go into the model file with its labels and training date."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from open_ticket_ai import Ticket, TicketNotFoundError, TicketSearch, TicketSystem
from open_ticket_ai.classification.backends import build_sklearn_pipeline
from open_ticket_ai.classification.model import (
    ClassAccuracy,
    ClassificationError,
    Metrics,
    SavedModel,
    library_versions,
)

if TYPE_CHECKING:
    from open_ticket_ai.runtime.ledger import RunRecord

__all__ = [
    "Example",
    "cross_validate",
    "examples_from_tickets",
    "read_examples",
    "ticket_label",
    "train",
    "training_steps",
]

Example = tuple[str, str]
"""One training example: ``(text, label)``."""

StepCallback = Callable[[str], None]
"""Called after each step of training with what was done (``"fold 2/5"``, ``"final fit"``)."""


def training_steps(folds: int) -> int:
    """How many times :func:`train` calls ``on_step``: once per fold, once for the final fit."""
    return folds + 1


def train(
    examples: Iterable[Example],
    *,
    folds: int = 5,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> SavedModel:
    """Cross-validate on ``folds`` stratified folds (0 skips it), then fit on every example.
    Save the result with ``model.save(path)``."""
    texts, labels = _checked(examples, folds)
    metrics = cross_validate(texts, labels, folds=folds, seed=seed, on_step=on_step)
    pipeline = build_sklearn_pipeline(seed=seed)
    pipeline.fit(texts, labels)
    if on_step is not None:
        on_step("final fit")
    return SavedModel(
        pipeline=pipeline,
        labels=tuple(str(c) for c in pipeline.classes_),
        trained_at=datetime.now(UTC),
        metrics=metrics,
        library_versions=library_versions(),
    )


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> Metrics | None:
    """Predict every example with a model that never saw it (stratified k-fold) and compare;
    None when ``folds`` is 0."""
    if folds == 0:
        return None
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    order = sorted(set(labels))
    index = {label: i for i, label in enumerate(order)}
    confusion = [[0] * len(order) for _ in order]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train_rows, test_rows) in enumerate(splitter.split(texts, labels), start=1):
        pipeline = build_sklearn_pipeline(seed=seed)
        pipeline.fit([texts[i] for i in train_rows], [labels[i] for i in train_rows])
        predicted = pipeline.predict([texts[i] for i in test_rows])
        for row, guess in zip(test_rows, predicted, strict=True):
            confusion[index[labels[row]]][index[str(guess)]] += 1
        if on_step is not None:
            on_step(f"fold {fold}/{folds}")
    return _metrics(order, confusion, folds)


def _metrics(order: list[str], confusion: list[list[int]], folds: int) -> Metrics:
    per_class = []
    for i, label in enumerate(order):
        support = sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        right = confusion[i][i]
        per_class.append(
            ClassAccuracy(
                label=label,
                support=support,
                accuracy=right / support if support else 0.0,
                precision=right / predicted if predicted else 0.0,
            )
        )
    samples = sum(map(sum, confusion))
    return Metrics(
        accuracy=sum(confusion[i][i] for i in range(len(order))) / samples,
        folds=folds,
        samples=samples,
        labels=tuple(order),
        per_class=tuple(per_class),
        confusion=tuple(tuple(row) for row in confusion),
    )


def _checked(examples: Iterable[Example], folds: int) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    for text, label in examples:
        texts.append(str(text))
        labels.append(str(label))
    counts = Counter(labels)
    if len(counts) < 2:
        raise ClassificationError(
            f"training needs examples of at least 2 labels (got {len(texts)} examples of "
            f"{len(counts)} label{'s' if len(counts) != 1 else ''}: {sorted(counts)})"
        )
    if folds == 1 or folds < 0:
        raise ClassificationError(f"folds must be 0 (no cross-validation) or at least 2 ({folds})")
    rare = sorted(label for label, n in counts.items() if n < folds)
    if rare:
        shown = ", ".join(f"{label!r} ({counts[label]})" for label in rare)
        raise ClassificationError(
            f"{folds}-fold cross-validation needs at least {folds} examples per label; too few "
            f"for {shown}: add examples, lower the folds, or use 0 folds to skip it"
        )
    return texts, labels


# -- sources ----------------------------------------------------------------------------------


def read_examples(
    path: str | os.PathLike[str],
    *,
    label: str = "label",
    text_fields: Sequence[str] | None = None,
) -> list[Example]:
    """Examples from a ``.csv`` (with a header row) or ``.jsonl`` file (one object a line).

    The label is the ``label`` column; the text joins ``text_fields`` with blank lines, by
    default ``text`` when there is such a column, else ``subject`` and ``body``. Rows with an
    empty label are unlabelled and skipped."""
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ClassificationError(f"{str(source)!r}: training data must be a .csv or .jsonl file")
    try:
        with source.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(_csv_rows(handle) if suffix == ".csv" else _jsonl_rows(handle, source))
    except OSError as exc:
        raise ClassificationError(f"cannot read training data {str(source)!r}: {exc}") from exc
    examples: list[Example] = []
    for where, row in rows:
        fields = _text_fields(row, text_fields)
        missing = [name for name in (label, *fields) if name not in row]
        if missing:
            keys = ", ".join(repr(k) for k in row) or "none"
            raise ClassificationError(
                f"{source}:{where}: no {', '.join(map(repr, missing))} (it has: {keys})"
            )
        value = row[label]
        if value is None or str(value).strip() == "":
            continue
        text = "\n\n".join(str(row[name] or "") for name in fields).strip()
        examples.append((text, str(value).strip()))
    return examples


def _text_fields(row: Mapping[str, Any], wanted: Sequence[str] | None) -> Sequence[str]:
    if wanted:
        return wanted
    if "text" in row or not ("subject" in row or "body" in row):
        return ("text",)
    return tuple(name for name in ("subject", "body") if name in row)


def _csv_rows(handle: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(handle)
    for row in reader:
        yield reader.line_num, row


def _jsonl_rows(handle: Iterable[str], source: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ClassificationError(f"{source}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise ClassificationError(f"{source}:{number}: expected a JSON object a line")
        yield number, row


def ticket_label(ticket: Ticket, label: str) -> str | None:
    """The ticket's ``queue``, ``priority`` (as ``"high"``), ``state``, or a custom field."""
    if label == "queue":
        return ticket.queue
    if label == "priority":
        return None if ticket.priority is None else ticket.priority.label
    if label == "state":
        return ticket.state
    value = ticket.custom_fields.get(label)
    return None if value is None or value == "" else str(value)


async def examples_from_tickets(
    system: TicketSystem[Any],
    *,
    label: str = "queue",
    search: TicketSearch | None = None,
    limit: int | None = None,
    corrections: Mapping[str, str] | None = None,
    excluded: Collection[str] = (),
    left_out: Counter[str] | None = None,
) -> list[Example]:
    """Examples from tickets a helpdesk already holds, sorted by people: each ticket's
    subject and body, and its ``label`` (see :func:`ticket_label`). Pages through ``search``
    (default: every ticket) until ``limit`` examples or the last page.

    ``corrections`` (ticket id -> label, from the console's review queue: see
    :func:`corrections_of`) win over the ticket's own field, and a corrected ticket the search
    did not return is fetched and added. Tickets in an ``excluded`` queue (one not sorted
    yet) are left out, counted per queue in ``left_out``, unless a person corrected them."""
    criteria = search or TicketSearch(limit=200)
    corrected = dict(corrections or {})
    examples: list[Example] = []
    offset = criteria.offset
    while limit is None or len(examples) < limit:
        page = await system.search(criteria.model_copy(update={"offset": offset}))
        for ticket in page:
            if ticket.id not in corrected and ticket.queue in excluded:
                if left_out is not None:
                    left_out[ticket.queue or ""] += 1
                continue
            value = corrected.pop(ticket.id, None) or ticket_label(ticket, label)
            if value:
                examples.append((ticket.text, value))
        if len(page) < criteria.limit:
            break
        offset += len(page)
    for ticket_id, value in corrected.items():
        if limit is not None and len(examples) >= limit:
            break
        try:
            ticket = await system.get(ticket_id)
        except TicketNotFoundError:
            continue  # deleted since it was corrected
        examples.append((ticket.text, value))
    return examples if limit is None else examples[:limit]


def corrections_of(runs: Iterable[RunRecord], system: str, label: str) -> dict[str, str]:
    """Ticket id -> the label a person set from the console's review queue, for the field
    ``label`` in the ticket system ``system``; ``runs`` newest first (the newest wins)."""
    found: dict[str, str] = {}
    for record in runs:
        for action in record.actions:
            if action.system != system or action.ticket_id is None:
                continue
            change = action.changes.get(label)
            if change is not None and action.ticket_id not in found and change[1] is not None:
                found[action.ticket_id] = str(change[1])
    return found
