"""What adapters share in their params: priority maps and time zones."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from open_ticket_ai.tickets.models import Priority

__all__ = ["check_time_zone", "parse_priority_map", "priority_of"]


def parse_priority_map(value: Any) -> Any:
    """A ``priority_map`` validator: keys may be 1-5 or level names (``very high``)."""
    if isinstance(value, dict):
        return {Priority.parse(key): mapped for key, mapped in value.items()}
    return value


def check_time_zone(value: str) -> str:
    """A ``time_zone`` validator: an IANA name (``Europe/Berlin``)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def priority_of(name: Any, mapping: dict[Priority, str]) -> Priority | None:
    """The level a system's priority name reads back as: of the levels mapped to it, the one
    its words name ("3 high": high), else the one nearest to normal; an unmapped name by its
    words alone; None when nothing fits."""
    if not isinstance(name, str):
        return None
    levels = [level for level, mapped in mapping.items() if mapped.casefold() == name.casefold()]
    try:
        named: Priority | None = Priority.parse(name.lstrip("0123456789 ").strip())
    except ValueError:
        named = None
    if named is not None and (named in levels or not levels):
        return named
    return min(levels, key=lambda level: abs(level - Priority.NORMAL), default=None)
