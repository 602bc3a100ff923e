"""Built-in triggers."""

from open_ticket_ai.base.triggers.cron_trigger import CronTrigger
from open_ticket_ai.base.triggers.date_trigger import DateTrigger
from open_ticket_ai.base.triggers.interval_trigger import IntervalTrigger
from open_ticket_ai.base.triggers.runner_finished_trigger import RunnerFinishedTrigger
from open_ticket_ai.base.triggers.webhook_trigger import WebhookTrigger

__all__ = [
    "CronTrigger",
    "DateTrigger",
    "IntervalTrigger",
    "RunnerFinishedTrigger",
    "WebhookTrigger",
]
