"""Classification: label tickets with a model, and train the model.

- :class:`ClassifierService` loads a model once (a file from ``otai train``, or a Hugging Face
  model with the ``ml`` extra) and shares it; :class:`ClassifyPipe` labels a text with it.
- :func:`train` fits the scikit-learn model from examples, :func:`read_examples` reads them
  from CSV or JSONL, :func:`examples_from_tickets` from a helpdesk's sorted tickets.

Importing this package imports neither scikit-learn nor transformers: backends import them
when they load a model.
"""

from open_ticket_ai.classification.backends import (
    Classifier,
    Prediction,
    SklearnClassifier,
    TransformersClassifier,
)
from open_ticket_ai.classification.classify_pipe import ClassifyParams, ClassifyPipe
from open_ticket_ai.classification.model import ClassificationError, Metrics, SavedModel
from open_ticket_ai.classification.service import ClassifierService, ClassifierServiceParams
from open_ticket_ai.classification.training import (
    Example,
    examples_from_tickets,
    read_examples,
    train,
)

__all__ = [
    "ClassificationError",
    "Classifier",
    "ClassifierService",
    "ClassifierServiceParams",
    "ClassifyParams",
    "ClassifyPipe",
    "Example",
    "Metrics",
    "Prediction",
    "SavedModel",
    "SklearnClassifier",
    "TransformersClassifier",
    "examples_from_tickets",
    "read_examples",
    "train",
]
