"""Secrets never shown: the configured secret values, and credentials inside URLs, are
replaced by ``***`` in every log line, stored error and printed result.

:data:`SECRETS` is the process's register. :func:`~open_ticket_ai.core.factory.build` adds
every secret of a config to it (a ``SecretStr`` param, or a param named like one: token,
secret, password, key), the HTTP listener adds its token and the console's key; the log
formatters, the run ledger and ``otai run --once`` pass what they write through
:meth:`Secrets.redact`.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from typing import Any, get_args

from pydantic import BaseModel, SecretStr

from open_ticket_ai.core.pipes.records import redact_url

__all__ = ["SECRETS", "Secrets", "secrets_of"]

MIN_SECRET = 4
"""Shorter values are not treated as secrets: replacing "ab" everywhere would garble text."""
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_SECRET_NAME = re.compile(r"pass|secret|token|api_?key|credential", re.IGNORECASE)


class Secrets:
    """A set of secret values, and :meth:`redact` that hides them (and URL credentials)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        if not values:  # the usual case, asked once per component of a large config
            return
        with self._lock:
            fresh = {v for v in values if len(v) >= MIN_SECRET} - self._values
            if fresh:
                self._values |= fresh
                longest_first = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, longest_first)))

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``, and each URL's user name,
        password and credential-like query values removed."""
        if not text:
            return text
        if "://" in text:
            text = _URL.sub(lambda m: redact_url(m.group(0)), text)
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub("***", text)
        return text


SECRETS = Secrets()
"""The process's secrets (see the module docstring)."""


def secrets_of(params: BaseModel) -> list[str]:
    """The secret values in a params model: SecretStr fields, and string fields whose name
    says secret (token, secret, password, api_key, credential), nested models included."""
    found: list[str] = []
    for name in _candidates(type(params)):
        value: Any = getattr(params, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, str) and _SECRET_NAME.search(name):
            found.append(value)
        elif isinstance(value, BaseModel):
            found.extend(secrets_of(value))
    return found


@functools.cache
def _candidates(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` that may hold a secret: named like one, or typed as a
    SecretStr or a model (which may hold one). Asked once per class, so that building
    10,000 runners whose params hold none costs a look-up each."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if _SECRET_NAME.search(name) or _may_hold(field.annotation)
    )


def _may_hold(annotation: Any) -> bool:
    if annotation is Any or annotation is object:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, SecretStr | BaseModel)
    return any(_may_hold(arg) for arg in get_args(annotation))
