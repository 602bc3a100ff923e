"""Pydantic validation errors as config problems: short messages, paths, "did you mean"."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["FOREIGN_KEYS", "Issue", "issues_of", "keys_of"]

FOREIGN_KEYS = {
    "pipes": "runners run one pipe each: write it under the runner's 'run:' (with 'steps:' "
    "for several)",
    "pipe_name": "give the pipe an 'id' and its class as 'use'",
    "pipelines": "write each pipeline as a runner under 'orchestrator.runners', its pipe "
    "under 'run:'",
    "run_every_milli_seconds": "a runner fires on its triggers: on: [{id: every_5s, params: "
    "{milliseconds: 5000}}]",
    "uses": "the component is named by 'use'",
    "with": "a component's settings go under 'params'",
    "model_name": "declare a ClassifierService (params: {model: NAME}, a Hugging Face id or "
    "directory) and give its id as 'model'",
}
"""Keys of Open Ticket AI configs that no version of its loader or ours accepts, with what
to write instead (instead of a close match that misleads: ``model_name`` is not ``model``)."""


@dataclass(frozen=True)
class Issue:
    """One validation error: where (relative to the validated value) and what."""

    loc: tuple[str | int, ...]
    message: str
    at_key: bool = False


def issues_of(exc: ValidationError, model: type[BaseModel] | None = None) -> Iterator[Issue]:
    """Turn a ValidationError into issues with plain messages."""
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            known = keys_of(model, loc[:-1]) if model is not None else []
            component = {"use", "params"} <= set(known)
            # Beside 'use', an unknown key is most likely a param written one level too high:
            # only a close match of a key of its own is a better guess.
            cutoff = 0.75 if component else 0.5
            hint = difflib.get_close_matches(key, known, n=1, cutoff=cutoff)
            text = f"unknown key {key!r}"
            if key in FOREIGN_KEYS:  # another project's spelling: say what to write here
                text += f": {FOREIGN_KEYS[key]}"
            elif hint:
                text += f"; did you mean {hint[0]!r}?"
            elif component:
                text += f": a component's params go under 'params:' (params: {{{key}: ...}})"
            elif known:
                text += f" (known keys: {', '.join(known)})"
            yield Issue(loc, text, at_key=True)
        elif kind == "missing":
            yield Issue(loc, "is required", at_key=True)
        else:
            secret = model is not None and _is_secret(model, loc)
            yield Issue(loc, _plain(error["msg"], None if secret else error.get("input")))


_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|credential", re.IGNORECASE)


def _is_secret(model: type[BaseModel], loc: tuple[str | int, ...]) -> bool:
    """Whether the value at ``loc`` is a secret: a SecretStr field, or one named like a
    secret. Its value is never shown in a message, not even the wrong one."""
    names = [part for part in loc if isinstance(part, str)]
    if names and _SECRET_NAME.search(names[-1]):
        return True
    current: type[BaseModel] | None = model
    field: Any = None
    for part in loc:
        if current is None or isinstance(part, int):
            continue
        field = _field(current, part)
        if field is None:
            return False
        current = _inner_model(field.annotation)
    return field is not None and "SecretStr" in repr(field.annotation)


def _plain(message: str, value: Any) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    if value is not None and not isinstance(value, dict | list):
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message += f" (got {shown})"
    return message


def keys_of(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model at ``loc`` inside ``model`` accepts (aliases where set)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = _field(current, part)
        current = _inner_model(field.annotation) if field is not None else None
    if current is None:
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType, dict, tuple):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None
