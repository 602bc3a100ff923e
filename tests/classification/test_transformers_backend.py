"""The transformers backend with a tiny BERT the test builds, trains briefly and saves locally:
nothing is downloaded. Skipped when the optional ``ml`` extra (transformers, torch) is absent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.classification.support import config, held_out_tickets, run_config
from tests.classification.tiny_bert import REASON, build_tiny_bert

from open_ticket_ai.classification import ClassificationError, TransformersClassifier

torch = pytest.importorskip("torch", reason=REASON)
transformers = pytest.importorskip("transformers", reason=REASON)
tokenizers = pytest.importorskip("tokenizers", reason=REASON)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT queue classifier, trained for a few seconds on the sample
    tickets and saved with ``save_pretrained``."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_a_local_model_directory_classifies_tickets(model_dir: Path) -> None:
    classifier = TransformersClassifier(model_dir)
    assert list(classifier.labels) == ["Billing", "HR", "IT Support", "Sales"]
    held_out = held_out_tickets()
    texts = [t.text for t in held_out]
    predictions = classifier.predict(texts)
    assert len(predictions) == len(held_out)
    for prediction in predictions:
        assert prediction.top[0] == (prediction.label, prediction.confidence)
        assert abs(sum(score for _, score in prediction.top) - 1) < 1e-4
    right = sum(p.label == t.queue for p, t in zip(predictions, held_out, strict=True))
    accuracy = right / len(held_out)
    print(f"tiny BERT queue accuracy on {len(held_out)} held-out tickets: {accuracy:.3f}")
    assert accuracy >= 0.6  # chance is about 0.4; a few seconds of training do better
    assert classifier.predict([]) == []
    # batching does not change the answers
    small_batches = TransformersClassifier(model_dir, batch_size=3).predict(texts[:7])
    assert [p.label for p in small_batches] == [p.label for p in predictions[:7]]

    started = time.perf_counter()
    for text in texts[:50]:
        classifier.predict([text])
    per_ticket = (time.perf_counter() - started) / 50
    print(f"tiny BERT latency per ticket: {per_ticket * 1000:.2f} ms")


async def test_classify_pipe_with_a_transformers_service(model_dir: Path) -> None:
    text = config(
        f"""
        - id: by_service
          use: ClassifyPipe
          params:
            text: "Die Rechnung wurde doppelt abgebucht, bitte um Erstattung."
            model: bert
            label_map: {{Billing: Accounting}}
        - id: by_path
          use: ClassifyPipe
          params: {{text: "My laptop does not start", model: "{model_dir}"}}
        """,
        top=f"""
        plugins: [open_ticket_ai.classification]
        services:
          - id: bert
            use: ClassifierService
            params: {{model: "{model_dir}", max_length: 64}}
        """,
    )
    result, run = await run_config(text)
    assert result.succeeded, result.message
    assert run.results["by_service"].data["label"] == "Billing"
    assert run.results["by_service"].data["value"] == "Accounting"
    assert run.results["by_path"].data["label"] in {"Billing", "HR", "IT Support", "Sales"}


def test_a_missing_model_is_a_classification_error(tmp_path: Path) -> None:
    with pytest.raises(ClassificationError, match="cannot load transformers model"):
        TransformersClassifier(tmp_path).load()  # a directory with no model in it
    offline = TransformersClassifier("no-such-org/no-such-model", local_files_only=True)
    with pytest.raises(ClassificationError, match="no-such-org/no-such-model"):
        offline.load()


async def test_open_ticket_ais_classification_pipe_and_service(model_dir: Path) -> None:
    text = config(
        f"""
        - id: classify-queue
          use: base:ClassificationPipe
          params:
            text: "Die Rechnung wurde doppelt abgebucht, bitte um Erstattung."
            model_name: "{model_dir}"
            classification_service: hf_local
        - id: again
          use: ClassificationPipe
          params:
            text: "{{{{ get_pipe_result('classify-queue', 'label') }}}}"
            model_name: "{model_dir}"
            classification_service: hf_local
        """,
        top="""
        services:
          - id: hf_local
            use: hf-local:HFClassificationService
            params: {api_token: null, max_models: 1}
        """,
    )
    result, run = await run_config(text)
    assert result.succeeded, result.message
    data = run.results["classify-queue"].data
    assert data["label"] == data["value"] == "Billing"
    assert 0.0 < data["confidence"] <= 1.0
    assert set(data["scores"]) == {"Billing", "HR", "IT Support", "Sales"}
    assert data["scores"]["Billing"] == data["confidence"]


def test_the_hf_service_keeps_at_most_max_models_loaded(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from open_ticket_ai.classification.upstream import (
        HFClassificationParams,
        HFClassificationService,
    )

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    service = HFClassificationService(HFClassificationParams(max_models=1), id="hf")
    first = service.classifier(str(model_dir))
    assert service.classifier(str(model_dir)) is first  # loaded once
    service.classifier(str(copy))
    assert service.classifier(str(model_dir)) is not first  # the first was let go
