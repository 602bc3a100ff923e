"""Building an orchestrator from a config the way a long-running service wants it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from open_ticket_ai.core.config.loader import LoadedConfig
from open_ticket_ai.core.factory import build
from open_ticket_ai.core.memory import freeze_long_lived, paused_gc
from open_ticket_ai.runtime.orchestrator import Orchestrator

__all__ = ["prepare"]


def prepare(load: Callable[[], LoadedConfig], **options: Any) -> Orchestrator:
    """Load, validate and build everything with the collector paused, then freeze it.

    One pause for the whole start-up (no collection of the half-built config, none when it
    ends), and everything built is moved out of the collector's sight before it resumes.
    Raises ConfigError like :func:`open_ticket_ai.build`."""
    with paused_gc():
        compiled = build(load()).without_load_state()
        orchestrator = Orchestrator(compiled, **options)
        freeze_long_lived()
    return orchestrator
