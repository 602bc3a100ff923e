"""The built-in components: ``use: open_ticket_ai.base:CompositePipe`` and friends."""

from open_ticket_ai.base.pipes import CompositePipe, ExpressionPipe, HttpRequestPipe
from open_ticket_ai.base.triggers import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    RunnerFinishedTrigger,
    WebhookTrigger,
)

__all__ = [
    "CompositePipe",
    "CronTrigger",
    "DateTrigger",
    "ExpressionPipe",
    "HttpRequestPipe",
    "IntervalTrigger",
    "RunnerFinishedTrigger",
    "WebhookTrigger",
]
