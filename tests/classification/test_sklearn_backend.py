"""The scikit-learn backend trained on the sample tickets, and the model file format."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import pytest
from tests.classification.support import held_out_tickets, queue_model, training_tickets

from open_ticket_ai.classification import (
    ClassificationError,
    Classifier,
    SavedModel,
    SklearnClassifier,
    train,
)
from open_ticket_ai.classification.model import FORMAT


def test_the_queue_model_is_accurate_on_tickets_it_never_saw() -> None:
    classifier = SklearnClassifier(queue_model())
    held_out = held_out_tickets()
    predictions = classifier.predict([t.text for t in held_out])
    accuracy = sum(p.label == t.queue for p, t in zip(predictions, held_out, strict=True)) / len(
        held_out
    )
    print(f"sklearn queue accuracy on {len(held_out)} held-out tickets: {accuracy:.3f}")
    assert accuracy >= 0.8  # four queues: chance is about 0.4 (the largest queue's share)


def test_the_priority_model_beats_chance() -> None:
    model = train([(t.text, t.priority.label) for t in training_tickets()], folds=0)
    held_out = held_out_tickets()
    predictions = SklearnClassifier(model).predict([t.text for t in held_out])
    right = sum(p.label == t.priority.label for p, t in zip(predictions, held_out, strict=True))
    accuracy = right / len(held_out)
    print(f"sklearn priority accuracy on {len(held_out)} held-out tickets: {accuracy:.3f}")
    assert accuracy >= 0.55  # the largest priority's share is about 0.45


def test_a_prediction_ranks_every_label() -> None:
    classifier = SklearnClassifier(queue_model())
    assert isinstance(classifier, Classifier)
    assert list(classifier.labels) == ["Billing", "HR", "IT Support", "Sales"]
    texts = ["My laptop does not start and the VPN is down", "Die Rechnung ist doppelt abgebucht"]
    first, second = classifier.predict(texts)
    assert (first.label, second.label) == ("IT Support", "Billing")
    for prediction in (first, second):
        assert next(label for label, _ in prediction.top) == prediction.label
        assert prediction.confidence == prediction.top[0][1]
        scores = [score for _, score in prediction.top]
        assert scores == sorted(scores, reverse=True)
        assert {label for label, _ in prediction.top} == set(classifier.labels)
        assert math.isclose(sum(scores), 1.0, rel_tol=1e-6)
        assert 0.25 < prediction.confidence <= 1.0
    assert classifier.predict([]) == []


def test_training_records_labels_date_and_cross_validated_metrics() -> None:
    model = queue_model()
    metrics = model.metrics
    assert metrics is not None
    assert (metrics.folds, metrics.samples) == (3, 400)
    assert metrics.labels == model.labels
    assert metrics.accuracy >= 0.8
    assert sum(map(sum, metrics.confusion)) == 400
    for i, per_class in enumerate(metrics.per_class):
        assert per_class.label == metrics.labels[i]
        assert per_class.support == sum(metrics.confusion[i])
        assert per_class.accuracy == metrics.confusion[i][i] / per_class.support
    assert (datetime.now(UTC) - model.trained_at).total_seconds() < 3600
    assert "scikit-learn" in model.library_versions


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = queue_model()
    path = model.save(tmp_path / "models" / "queue.joblib")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["queue.joblib"]  # no temporary left
    loaded = SavedModel.load(path)
    assert loaded.labels == model.labels
    assert loaded.trained_at == model.trained_at
    assert loaded.metrics == model.metrics
    assert loaded.library_versions == model.library_versions
    texts = [t.text for t in held_out_tickets()[:20]]
    assert SklearnClassifier(loaded).predict(texts) == SklearnClassifier(model).predict(texts)


def test_loading_something_else_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ClassificationError, match="no model file"):
        SavedModel.load(tmp_path / "missing.joblib")
    garbage = tmp_path / "garbage.joblib"
    garbage.write_text("not a pickle")
    with pytest.raises(ClassificationError, match="cannot read model file"):
        SavedModel.load(garbage)
    other = tmp_path / "other.joblib"
    joblib.dump({"some": "dict"}, other)
    with pytest.raises(ClassificationError, match="not an open-ticket-ai model file"):
        SavedModel.load(other)
    newer = tmp_path / "newer.joblib"
    joblib.dump({"format": FORMAT, "version": 99}, newer)
    with pytest.raises(ClassificationError, match="format version 99"):
        SavedModel.load(newer)


def test_training_needs_two_labels_and_enough_examples_per_fold() -> None:
    with pytest.raises(ClassificationError, match="at least 2 labels"):
        train([("a", "x"), ("b", "x")])
    examples = [(f"printer {i}", "IT") for i in range(6)] + [("invoice", "Billing")] * 2
    with pytest.raises(ClassificationError, match=r"'Billing' \(2\).*0 folds"):
        train(examples, folds=3)
    with pytest.raises(ClassificationError, match="folds must be 0"):
        train(examples, folds=1)
    model = train(examples, folds=0)
    assert model.metrics is None
    assert SklearnClassifier(model).predict(["invoice"])[0].label == "Billing"


def test_training_reports_each_step() -> None:
    steps: list[str] = []
    examples = [(t.text, t.queue) for t in training_tickets()[:120]]
    train(examples, folds=2, on_step=steps.append)
    assert steps == ["fold 1/2", "fold 2/2", "final fit"]
