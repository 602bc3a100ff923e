"""Open Ticket AI's classification components, as its configs name them.

``hf-local:HFClassificationService`` serves any Hugging Face model by name (a hub id or a
local directory), loaded once per distinct model and kept in a bounded LRU;
``base:ClassificationPipe`` asks it for ``model_name`` and returns that project's result keys
(``label``, ``confidence``, ``scores``) besides ``value``. Both run through this project's
transformers backend; inference runs in a worker thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from pydantic import Field, SecretStr

from open_ticket_ai import (
    Decision,
    ParamsModel,
    Pipe,
    PipeContext,
    PipeResult,
    Service,
    ServiceId,
)
from open_ticket_ai.classification.backends import Classifier, TransformersClassifier

__all__ = [
    "ClassificationParams",
    "ClassificationPipe",
    "HFClassificationParams",
    "HFClassificationService",
]


class HFClassificationParams(ParamsModel):
    """How many models stay loaded, and how texts are cut."""

    api_token: SecretStr | None = None
    """Accepted for Open Ticket AI configs; models are read from the local cache or a
    directory (a private hub model must be there already)."""
    max_models: int = Field(4, ge=1, le=64)
    """Distinct models kept loaded at once; the least recently used goes first."""
    max_length: int = Field(256, ge=8, le=8192)
    batch_size: int = Field(16, ge=1, le=1024)


class HFClassificationService(Service[HFClassificationParams]):
    """Hugging Face text classifiers by name, each loaded on first use (blocking: call it from
    a worker thread) and shared by every pipe that asks for the same model."""

    def __init__(self, params: HFClassificationParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Classifier] = OrderedDict()

    def classifier(self, model_name: str) -> Classifier:
        with self._lock:
            found = self._loaded.get(model_name)
            if found is not None:
                self._loaded.move_to_end(model_name)
                return found
        p = self.params
        loaded = TransformersClassifier(
            model_name, max_length=p.max_length, batch_size=p.batch_size
        )
        loaded.load()
        with self._lock:
            self._loaded[model_name] = loaded
            while len(self._loaded) > p.max_models:
                self._loaded.popitem(last=False)
        return loaded

    async def close(self) -> None:
        with self._lock:
            self._loaded.clear()


class ClassificationParams(ParamsModel):
    """Open Ticket AI's ``ClassificationPipe`` params."""

    text: str
    model_name: str = Field(min_length=1)
    """A Hugging Face hub id or a local model directory."""
    classification_service: ServiceId
    """The HFClassificationService (``injects: {classification_service: ...}``)."""


class ClassificationPipe(Pipe[ClassificationParams]):
    """Classifies ``text`` with ``model_name``: ``data.label``, ``data.confidence`` and
    ``data.scores`` (label -> score) as Open Ticket AI gives them, ``data.value`` the label.
    Recorded as a decision of the run."""

    def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        service = ctx.service(p.classification_service, HFClassificationService)
        prediction = service.classifier(p.model_name).predict([p.text])[0]
        ctx.record_decision(
            Decision(
                model=p.model_name,
                label=prediction.label,
                confidence=prediction.confidence,
                top=tuple(prediction.top[:3]),
                used=prediction.label,
            )
        )
        return PipeResult.success(
            {
                "value": prediction.label,
                "label": prediction.label,
                "confidence": prediction.confidence,
                "scores": dict(prediction.top),
            }
        )
