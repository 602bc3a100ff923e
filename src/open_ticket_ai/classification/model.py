"""The saved model format: one file holding a fitted scikit-learn pipeline, its labels, when it
was trained and how well it did in cross-validation.

The file is a joblib pickle of a plain dict (``format``, ``version``, ``pipeline``, ``labels``,
``trained_at``, ``metrics``, ``library_versions``). Like every pickle, loading it runs code the
file names: load only model files you (or your own ``otai train``) wrote.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from open_ticket_ai import OpenTicketAIError

__all__ = ["FORMAT", "VERSION", "ClassAccuracy", "ClassificationError", "Metrics", "SavedModel"]

FORMAT = "open-ticket-ai/classifier"
VERSION = 1


class ClassificationError(OpenTicketAIError):
    """A model cannot be trained, saved, loaded or run; the message names the file or label."""


@dataclass(frozen=True)
class ClassAccuracy:
    """How one label fared in cross-validation: ``accuracy`` is the share of its examples
    predicted as it (its recall), ``precision`` the share of its predictions that were right."""

    label: str
    support: int
    accuracy: float
    precision: float


@dataclass(frozen=True)
class Metrics:
    """Cross-validated quality of a model: overall accuracy, per-class figures, and the
    confusion matrix (``confusion[i][j]``: examples of ``labels[i]`` predicted as
    ``labels[j]``)."""

    accuracy: float
    folds: int
    samples: int
    labels: tuple[str, ...]
    per_class: tuple[ClassAccuracy, ...]
    confusion: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "folds": self.folds,
            "samples": self.samples,
            "labels": list(self.labels),
            "per_class": [vars(c) for c in self.per_class],
            "confusion": [list(row) for row in self.confusion],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        return cls(
            accuracy=float(data["accuracy"]),
            folds=int(data["folds"]),
            samples=int(data["samples"]),
            labels=tuple(data["labels"]),
            per_class=tuple(ClassAccuracy(**c) for c in data["per_class"]),
            confusion=tuple(tuple(int(n) for n in row) for row in data["confusion"]),
        )


@dataclass(frozen=True)
class SavedModel:
    """A fitted scikit-learn text pipeline (``predict_proba`` over texts) with what it knows:
    its ``labels`` in the pipeline's class order, when it was trained, and its ``metrics``
    (None when it was trained without cross-validation)."""

    pipeline: Any
    labels: tuple[str, ...]
    trained_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    metrics: Metrics | None = None
    library_versions: Mapping[str, str] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model file atomically (a reader never sees half a file); return its path."""
        import joblib  # type: ignore[import-untyped]

        target = Path(path)
        document = {
            "format": FORMAT,
            "version": VERSION,
            "pipeline": self.pipeline,
            "labels": list(self.labels),
            "trained_at": self.trained_at.isoformat(),
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
            "library_versions": dict(self.library_versions),
        }
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(handle)
            try:
                joblib.dump(document, temporary, compress=3)
                os.replace(temporary, target)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
        except OSError as exc:
            raise ClassificationError(f"cannot write model file {str(target)!r}: {exc}") from exc
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SavedModel:
        """Read a model file written by :meth:`save`; ClassificationError says what is wrong."""
        import joblib

        source = Path(path)
        try:
            document = joblib.load(source)
        except FileNotFoundError:
            raise ClassificationError(f"no model file {str(source)!r}") from None
        except Exception as exc:
            raise ClassificationError(
                f"cannot read model file {str(source)!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ClassificationError(
                f"{str(source)!r} is not an open-ticket-ai model file (train one with `otai train`)"
            )
        if document.get("version") != VERSION:
            raise ClassificationError(
                f"{str(source)!r} has model format version {document.get('version')!r}; "
                f"this open-ticket-ai reads version {VERSION}: retrain it with `otai train`"
            )
        metrics = document.get("metrics")
        return cls(
            pipeline=document["pipeline"],
            labels=tuple(document["labels"]),
            trained_at=datetime.fromisoformat(document["trained_at"]),
            metrics=None if metrics is None else Metrics.from_dict(metrics),
            library_versions=dict(document.get("library_versions", {})),
        )


def library_versions(names: Sequence[str] = ("scikit-learn", "numpy")) -> dict[str, str]:
    """The installed versions of the libraries a pickled pipeline depends on."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
