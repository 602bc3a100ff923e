"""Built-in triggers."""

from open_ticket_ai.base.triggers.interval_trigger import IntervalTrigger

__all__ = ["IntervalTrigger"]
