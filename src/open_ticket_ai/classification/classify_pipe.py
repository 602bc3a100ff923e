"""ClassifyPipe: label a text with a classifier, map the label to an output value, and fall
back when the model is not sure."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from open_ticket_ai import (
    Decision,
    ParamsModel,
    Pipe,
    PipeContext,
    PipeError,
    PipeResult,
    ServiceOrPath,
)
from open_ticket_ai.classification.backends import Classifier, Prediction
from open_ticket_ai.classification.batching import batcher_for
from open_ticket_ai.classification.service import ClassifierService, load_classifier
from open_ticket_ai.core.pipes.run import worker_threads

__all__ = ["ClassifyParams", "ClassifyPipe"]


class ClassifyParams(ParamsModel):
    """What to classify, with which model, and how to turn the answer into a value."""

    text: str
    """What to classify, usually a template: ``"{{ pipe_result('fetch', 'ticket').text }}"``."""
    model: ServiceOrPath = Field(min_length=1)
    """The id of a ClassifierService under ``services:``, or the path of a model file
    (``otai train``) or of a transformers model directory."""
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    """Below this confidence the result is ``low_confidence`` and ``value`` is ``fallback``."""
    fallback: Any = None
    """The ``value`` when confidence is below ``threshold`` (default: none)."""
    label_map: dict[str, Any] = Field(default_factory=dict)
    """Label -> output value (a queue name, a priority); labels not listed are their own
    value."""
    top_k: int = Field(3, ge=1, le=100)
    """How many of the best labels ``top`` lists."""
    ticket_id: str | None = None
    """The ticket the text comes from, for the run's record of decisions. Default: the
    ``id`` of the ``for_each`` item when the item is a ticket."""

    @field_validator("ticket_id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ClassifyPipe(Pipe[ClassifyParams]):
    """Classifies ``text`` and succeeds with ``data``: ``label`` and ``confidence`` (the
    model's answer), ``top`` (the ``top_k`` best as ``{label, score}``), ``value`` (the label
    through ``label_map``, or ``fallback`` when below ``threshold``), ``low_confidence``,
    ``threshold`` and ``explanation``, the outcome in words for a note: ``"Billing (93%
    sure)"``, or below the threshold ``"Review (best guess Billing, 33% sure, below the
    threshold 50%)"``. Inference runs in a worker thread, never on the event loop, batched
    with the texts other pipes ask the same model about at the same time (a ``for_each`` with
    ``concurrency``; see :mod:`~open_ticket_ai.classification.batching`). Each classification
    is recorded as a decision of the run (model, label, confidence, the best three,
    fallback)."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        p = self.params
        classifier = _loaded(ctx, p.model)
        if classifier is None:  # reading the model file blocks: in a worker thread
            classifier = await asyncio.to_thread(worker_threads.run_call, _classifier, ctx, p.model)
        prediction = await batcher_for(classifier).predict(p.text)
        result = _result(p, prediction)
        ctx.record_decision(
            Decision(
                model=p.model,
                label=prediction.label,
                confidence=prediction.confidence,
                top=prediction.top[:3],
                ticket_id=p.ticket_id or _item_ticket(ctx),
                below_threshold=bool(result.data["low_confidence"]),
                used=result.data["value"],
            )
        )
        return result


def _item_ticket(ctx: PipeContext) -> str | None:
    """The ``id`` of the ``for_each`` item, when the item is a ticket (a mapping with an id)."""
    item = ctx.run.template_vars.get("item")
    if isinstance(item, Mapping) and isinstance(item.get("id"), str | int):
        return str(item["id"])
    return None


def _result(p: ClassifyParams, prediction: Prediction) -> PipeResult:
    low = prediction.confidence < p.threshold
    value = p.fallback if low else p.label_map.get(prediction.label, prediction.label)
    sure = _percent(prediction.confidence, below=p.threshold if low else None)
    if low:
        explanation = (
            f"{_shown(value)} (best guess {prediction.label}, {sure} sure, "
            f"below the threshold {_threshold(p.threshold)})"
        )
        message = (
            f"low confidence: best guess {prediction.label!r} is {sure} sure, below the "
            f"threshold {_threshold(p.threshold)}; using {value!r}"
        )
    else:
        explanation = f"{_shown(value)} ({sure} sure)"
        shown = f"{prediction.label!r} ({prediction.confidence:.2f})"
        message = f"{shown} -> {value!r}" if value != prediction.label else shown
    data = {
        "label": prediction.label,
        "confidence": prediction.confidence,
        "top": [{"label": label, "score": score} for label, score in prediction.top[: p.top_k]],
        "value": value,
        "low_confidence": low,
        "threshold": p.threshold,
        "explanation": explanation,
    }
    return PipeResult.success(data, message=message)


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def _percent(share: float, *, below: float | None = None) -> str:
    """A confidence in whole percent (``0.334`` -> ``"33%"``). With ``below`` (a threshold
    the confidence is under), one that would round up to the threshold is shown just under
    it: 49.6% below 50% reads ``"49%"``, never ``"50%"``."""
    whole = round(share * 100)
    if below is not None:
        whole = max(0, min(whole, math.ceil(round(below * 100, 6)) - 1))
    return f"{whole}%"


def _threshold(share: float) -> str:
    """A threshold in percent with its decimals: ``0.5`` -> ``"50%"``, ``0.335`` ->
    ``"33.5%"``."""
    return f"{share * 100:.4g}%"


def _loaded(ctx: PipeContext, model: str) -> Classifier | None:
    """The classifier ``model`` names when it is loaded already (nothing blocks), else None."""
    if model in ctx.run.services:
        service = ctx.service(model, ClassifierService)
        return service.load() if service.loaded else None
    return _model_files.cached(Path(model).expanduser())


def _classifier(ctx: PipeContext, model: str) -> Classifier:
    if model in ctx.run.services:
        return ctx.service(model, ClassifierService).load()
    path = Path(model).expanduser()
    if path.is_file() or (path.is_dir() and (path / "config.json").is_file()):
        return _model_files.get(path)
    services = ", ".join(sorted(ctx.run.services)) or "none"
    raise PipeError(
        f"{ctx.spec.path}.params.model: no service {model!r} (services: {services}) and no "
        f"model file or transformers model directory at {str(path)!r}: train one with "
        "`otai train` (the demo's: `otai demo setup`)"
    )


class _ModelFiles:
    """Classifiers named by path, loaded once and reused by every run (a pipe is built fresh
    per run); reloaded when the file changes (a model file is replaced whole), so a retrained
    model is picked up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[tuple[int, int, int], Classifier]] = {}

    def cached(self, path: Path) -> Classifier | None:
        """The classifier of ``path`` when loaded and the file is unchanged, else None."""
        try:
            key, stamp = _stamp(path)
        except OSError:
            return None
        with self._lock:
            found = self._loaded.get(key)
        return found[1] if found is not None and found[0] == stamp else None

    def get(self, path: Path) -> Classifier:
        key, stamp = _stamp(path)
        with self._lock:
            found = self._loaded.get(key)
            if found is not None and found[0] == stamp:
                return found[1]
            classifier = load_classifier(str(key), "transformers" if key.is_dir() else "sklearn")
            self._loaded[key] = (stamp, classifier)
            return classifier


def _stamp(path: Path) -> tuple[Path, tuple[int, int, int]]:
    key = path.resolve()
    stat = (key / "config.json" if key.is_dir() else key).stat()
    return key, (stat.st_ino, stat.st_mtime_ns, stat.st_size)


_model_files = _ModelFiles()
