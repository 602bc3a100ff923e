"""Process resources that components share across runs (a pooled HTTP client) and that the
orchestrator closes at shutdown, after the last run and before the services."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

__all__ = ["close_shared", "on_shutdown"]

_log = logging.getLogger("open_ticket_ai")
_CLOSERS: list[tuple[weakref.ref[asyncio.AbstractEventLoop], Callable[[], Awaitable[object]]]] = []


def on_shutdown(close: Callable[[], Awaitable[object]]) -> None:
    """Call ``await close()`` when the orchestrator of the running event loop stops (once;
    then it is forgotten). What belongs to a loop that is gone is just dropped."""
    _CLOSERS.append((weakref.ref(asyncio.get_running_loop()), close))


CLOSE_TIMEOUT = 5.0
"""Seconds one closer may take."""


async def close_shared() -> None:
    """Close what :func:`on_shutdown` registered, each within :data:`CLOSE_TIMEOUT`; a closer
    that fails or hangs is logged and skipped, never stops the shutdown."""
    loop = asyncio.get_running_loop()
    mine = []
    for entry in list(_CLOSERS):
        owner = entry[0]()
        if owner is loop or owner is None or owner.is_closed():
            _CLOSERS.remove(entry)
            if owner is loop:
                mine.append(entry[1])
    for close in reversed(mine):
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await close()
        except TimeoutError:
            _log.warning("closing a shared resource took over %ss: left behind", CLOSE_TIMEOUT)
        except Exception as exc:
            _log.warning("closing a shared resource failed: %s: %s", type(exc).__name__, exc)
