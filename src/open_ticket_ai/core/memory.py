"""Garbage-collector handling for a long-running service with a large, long-lived config.

Loading a big config allocates hundreds of thousands of objects that live as long as the
process; left alone, the cyclic collector rescans them again and again while they are built
(most of the load time) and at every full collection afterwards (a pause on the event loop).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_long_lived", "paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """No automatic collection inside; nested uses are fine; restores the previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_long_lived(*, collect: bool = False) -> None:
    """Move every object alive now out of the collector's sight, for good.

    Called once the config is built: what is alive then lives as long as the process. With
    ``collect``, one full collection first frees the cyclic garbage loading left."""
    if collect:
        gc.collect()
    gc.freeze()
