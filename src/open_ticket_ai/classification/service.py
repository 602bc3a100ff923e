"""ClassifierService: a classifier model declared once under ``services:`` and shared."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from open_ticket_ai import ParamsModel, Service
from open_ticket_ai.classification.backends import (
    Classifier,
    Prediction,
    SklearnClassifier,
    TransformersClassifier,
)
from open_ticket_ai.classification.model import ClassificationError

__all__ = ["ClassifierService", "ClassifierServiceParams", "load_classifier"]

Backend = Literal["sklearn", "transformers"]


class ClassifierServiceParams(ParamsModel):
    """Where the model is and which backend reads it. ``path`` alone means a model file from
    ``otai train`` (backend ``sklearn``); ``model`` alone a Hugging Face model (backend
    ``transformers``): a directory written by ``save_pretrained`` or a hub id."""

    path: str | None = Field(None, min_length=1)
    """A model file (``sklearn``), or a model directory (``transformers``)."""
    model: str | None = Field(None, min_length=1)
    """A Hugging Face hub id or model directory (``transformers`` only)."""
    backend: Backend | None = None
    """Default: ``sklearn`` with ``path``, ``transformers`` with ``model``."""
    max_length: int = Field(256, ge=8, le=8192)
    """``transformers``: texts are cut to this many tokens."""
    batch_size: int = Field(16, ge=1, le=1024)
    """``transformers``: texts per forward pass."""

    @model_validator(mode="after")
    def _one_source(self) -> ClassifierServiceParams:
        if (self.path is None) == (self.model is None):
            raise ValueError("give exactly one of 'path' (a model file) or 'model' (a hub id)")
        if self.backend == "sklearn" and self.model is not None:
            raise ValueError("the sklearn backend reads a model file: use 'path', not 'model'")
        return self

    @property
    def source(self) -> str:
        source = self.path if self.path is not None else self.model
        assert source is not None
        return source

    @property
    def resolved_backend(self) -> Backend:
        if self.backend is not None:
            return self.backend
        return "sklearn" if self.path is not None else "transformers"


def load_classifier(
    source: str,
    backend: Backend,
    *,
    max_length: int = 256,
    batch_size: int = 16,
) -> Classifier:
    """Build and load the classifier ``source`` names (blocking: model files are read now)."""
    if backend == "sklearn":
        return SklearnClassifier.from_file(Path(source).expanduser())
    local = Path(source).expanduser()
    classifier = TransformersClassifier(
        local if local.is_dir() else source, max_length=max_length, batch_size=batch_size
    )
    classifier.load()
    return classifier


class ClassifierService(Service[ClassifierServiceParams]):
    """A classifier shared by every ``ClassifyPipe`` that names this service's id. The model
    loads once, in a worker thread, when the orchestrator opens the service (or on first use
    if nothing opened it); ``predict`` blocks and belongs in a worker thread."""

    def __init__(self, params: ClassifierServiceParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self._lock = threading.Lock()
        self._classifier: Classifier | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self.load)

    async def close(self) -> None:
        with self._lock:
            self._classifier = None

    def load(self) -> Classifier:
        """The loaded classifier, loading it first if needed (blocking)."""
        with self._lock:
            if self._classifier is None:
                self._classifier = self.build_classifier()
            return self._classifier

    def warnings(self) -> list[tuple[str, str]]:
        missing = self._missing_file()
        return [("path", f"{missing}; the service cannot start without it")] if missing else []

    def _missing_file(self) -> str | None:
        p = self.params
        if p.resolved_backend != "sklearn" or p.path is None:
            return None
        if Path(p.path).expanduser().is_file():
            return None
        return (
            f"no model file at {p.path!r} yet: train one with `otai train` (the demo's: "
            "`otai demo setup`)"
        )

    def build_classifier(self) -> Classifier:
        """Read the model the params name. Override to serve another :class:`Classifier`."""
        missing = self._missing_file()
        if missing is not None:
            raise ClassificationError(f"service {self.id!r}: {missing}")
        p = self.params
        return load_classifier(
            p.source, p.resolved_backend, max_length=p.max_length, batch_size=p.batch_size
        )

    @property
    def loaded(self) -> bool:
        return self._classifier is not None

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify ``texts`` (blocking; loads the model on first use)."""
        return self.load().predict(texts)

    def describe(self) -> dict[str, Any]:
        """What the service serves, for logs."""
        p = self.params
        return {"id": self.id, "backend": p.resolved_backend, "source": p.source}
