"""Durations as written in configs: seconds as a number, ``"500ms"``, ``"30s"``, ``"1h30m"``,
or ISO 8601 (``"PT5M"``, ``"P1DT2H"``)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_COMPACT = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_ISO = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise ValueError with the accepted forms when it is not one."""
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {_shown(value)}: must be a finite number of seconds")
    return seconds


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"invalid duration {_shown(value)}: a duration must be a number of seconds or a string "
            "like '30s'"
        )
    if not isinstance(value, str):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            return math.inf
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    iso = _ISO.fullmatch(text.upper())
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        factors = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
        return sum(float(v) * factors[k] for k, v in iso.groupdict().items() if v)
    compact = text.replace(" ", "").lower()
    parts = _COMPACT.findall(compact)
    if parts and "".join(n + u for n, u in parts) == compact:
        return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(
        f"invalid duration {_shown(value)}: use seconds, '500ms', '30s', '5m', '1h30m' or 'PT5M'"
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(seconds: float) -> str:
    """Render seconds compactly for messages: ``0.25`` -> ``"250ms"``, ``90`` -> ``"1m30s"``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    out = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            count, rest = divmod(rest, size)
            out.append(f"{int(count)}{unit}")
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda v: v, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "description": "seconds"},
                {"type": "string", "description": "'500ms', '30s', '5m', '1h30m' or 'PT5M'"},
            ]
        }
    ),
]
"""A pydantic field type: seconds, parsed from any form :func:`parse_duration` takes."""
