"""Built-in triggers."""

from open_ticket_ai.base.triggers.cron_trigger import CronTrigger
from open_ticket_ai.base.triggers.date_trigger import DateTrigger
from open_ticket_ai.base.triggers.interval_trigger import IntervalTrigger

__all__ = ["CronTrigger", "DateTrigger", "IntervalTrigger"]
