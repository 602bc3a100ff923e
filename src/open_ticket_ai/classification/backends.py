"""Classifier backends: the :class:`Classifier` protocol and its two implementations.

- :class:`SklearnClassifier`: a model file trained by ``otai train`` (TF-IDF over word and
  character n-grams, which suit English and German alike, and logistic regression).
- :class:`TransformersClassifier`: a Hugging Face text-classification model from a local
  directory or a hub id (the optional ``ml`` extra: ``pip install 'ticketflow-orchestrator[ml]'``).

Heavy libraries are imported when a backend is built or loaded, never when this module is.
Every ``predict`` blocks: call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from open_ticket_ai.classification.model import ClassificationError, SavedModel
from open_ticket_ai.classification.text_features import fast_predict_proba

__all__ = [
    "Classifier",
    "Prediction",
    "SklearnClassifier",
    "TransformersClassifier",
    "build_sklearn_pipeline",
]


@dataclass(frozen=True)
class Prediction:
    """The predicted ``label`` of one text, its ``confidence`` (probability, 0-1), and
    ``top``: every label with its score, best first."""

    label: str
    confidence: float
    top: tuple[tuple[str, float], ...]


@runtime_checkable
class Classifier(Protocol):
    """Anything that labels texts. ``predict`` returns one Prediction per text, in order."""

    @property
    def labels(self) -> Sequence[str]: ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


def _ranked(labels: Sequence[str], scores: Sequence[float]) -> Prediction:
    top = sorted(
        ((label, float(score)) for label, score in zip(labels, scores, strict=True)),
        key=lambda pair: pair[1],
        reverse=True,
    )
    return Prediction(label=top[0][0], confidence=top[0][1], top=tuple(top))


def build_sklearn_pipeline(*, seed: int = 0) -> Any:
    """A fresh, unfitted scikit-learn pipeline: word 1-2-grams and character 2-5-grams (within
    word boundaries, robust to German compounds and inflection), both TF-IDF weighted, into a
    class-balanced logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import FeatureUnion, Pipeline  # type: ignore[import-untyped]

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        ]
    )
    # newton-cg reaches the optimum lbfgs only approaches, in a few second-order steps: on the
    # demo's tickets the same accuracy (or a ticket better) at a quarter of the training time.
    model = LogisticRegression(
        C=10.0, solver="newton-cg", max_iter=200, class_weight="balanced", random_state=seed
    )
    return Pipeline([("features", features), ("model", model)])


class SklearnClassifier:
    """A :class:`~open_ticket_ai.classification.model.SavedModel` as a Classifier. Safe to call
    from several threads at once: prediction only reads the fitted pipeline."""

    def __init__(self, model: SavedModel) -> None:
        classes = [str(c) for c in getattr(model.pipeline, "classes_", model.labels)]
        if classes != list(model.labels):
            raise ClassificationError(
                f"model labels {list(model.labels)} do not match its pipeline's classes {classes}"
            )
        self.model = model
        self._predict_proba = fast_predict_proba(model.pipeline) or model.pipeline.predict_proba

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SklearnClassifier:
        return cls(SavedModel.load(path))

    @property
    def labels(self) -> Sequence[str]:
        return self.model.labels

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        rows = self._predict_proba(list(texts))
        return [_ranked(self.model.labels, row) for row in rows]


def _optional(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ClassificationError(
            f"the transformers backend needs {name!r}, which is not installed: "
            "pip install 'ticketflow-orchestrator[ml]'"
        ) from exc


class TransformersClassifier:
    """A Hugging Face sequence-classification model (``model``: a local directory written by
    ``save_pretrained``, or a hub id), loaded on first use or by :meth:`load`. Labels come from
    the model config's ``id2label``. Texts are truncated to ``max_length`` tokens and run in
    batches of ``batch_size`` on the CPU; calls are serialised, as tokenizers are not safe to
    share between threads."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        max_length: int = 256,
        batch_size: int = 16,
        local_files_only: bool = False,
    ) -> None:
        self.source = str(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.local_files_only = local_files_only or Path(self.source).is_dir()
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, tuple[str, ...]] | None = None

    def load(self) -> None:
        """Load tokenizer and model now (blocking); later calls do nothing."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> tuple[Any, Any, tuple[str, ...]]:
        if self._loaded is not None:
            return self._loaded
        _optional("torch")
        transformers = _optional("transformers")
        with contextlib.suppress(AttributeError):  # progress bars are noise in a service's log
            transformers.utils.logging.disable_progress_bar()
        options = {"local_files_only": self.local_files_only}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.source, **options)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                self.source, **options
            )
        except (OSError, ValueError) as exc:
            raise ClassificationError(
                f"cannot load transformers model {self.source!r}: {type(exc).__name__}: {exc}"
            ) from exc
        model.eval()
        id2label = dict(model.config.id2label)
        labels = tuple(str(id2label[i]) for i in range(len(id2label)))
        self._loaded = (tokenizer, model, labels)
        return self._loaded

    @property
    def labels(self) -> Sequence[str]:
        with self._lock:
            return self._load_locked()[2]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        torch = _optional("torch")
        with self._lock:
            tokenizer, model, labels = self._load_locked()
            predictions: list[Prediction] = []
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                encoded = tokenizer(
                    batch,
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                with torch.inference_mode():
                    logits = model(**encoded).logits
                rows = torch.softmax(logits, dim=-1).tolist()
                predictions.extend(_ranked(labels, row) for row in rows)
            return predictions
