"""open-ticket-ai: a helpdesk automation orchestrator driven by one YAML file.

The public plugin API: subclass :class:`Pipe`, :class:`TimeTrigger` or :class:`EventTrigger`,
:class:`Service` or :class:`TicketSystem`, declare ``Params`` as a :class:`ParamsModel`, and
name the class in a config with ``use: "your_module:YourClass"``. A pipe reports what it
changed with ``ctx.record_action(Action...)`` and what it decided with
``ctx.record_decision(Decision(...))``. Everything here is stable; everything else is internal.
"""

from open_ticket_ai.core.component import NoParams, ParamsModel
from open_ticket_ai.core.config import AppConfig, load_config, parse_config
from open_ticket_ai.core.durations import Duration
from open_ticket_ai.core.factory import CompiledConfig, build
from open_ticket_ai.core.pipes import Pipe, PipeContext, PipeResult
from open_ticket_ai.core.pipes.records import Action, ActionKind, Decision, StepReport
from open_ticket_ai.core.pipes.result import PipeStatus
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.core.services import Service, ServiceId, ServiceOrPath
from open_ticket_ai.core.triggers.base import (
    EventTrigger,
    FireOutcome,
    FireStatus,
    TimeTrigger,
    Trigger,
    TriggerHost,
)
from open_ticket_ai.errors import (
    AnswerLostError,
    ComponentError,
    ConfigError,
    OpenTicketAIError,
    PipeError,
    Problem,
    TemplateError,
    TicketNotFoundError,
    TicketSystemError,
)
from open_ticket_ai.runtime.events import RunEnded, RunOutcome
from open_ticket_ai.tickets.models import NewTicket, Note, Ticket, TicketChanges, TicketSearch
from open_ticket_ai.tickets.system import TicketSystem

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionKind",
    "AnswerLostError",
    "AppConfig",
    "CompiledConfig",
    "ComponentError",
    "ConfigError",
    "Decision",
    "Duration",
    "EventTrigger",
    "FireOutcome",
    "FireStatus",
    "NewTicket",
    "NoParams",
    "Note",
    "OpenTicketAIError",
    "ParamsModel",
    "Pipe",
    "PipeContext",
    "PipeError",
    "PipeResult",
    "PipeStatus",
    "Problem",
    "Registry",
    "RunEnded",
    "RunOutcome",
    "Service",
    "ServiceId",
    "ServiceOrPath",
    "StepReport",
    "TemplateError",
    "Ticket",
    "TicketChanges",
    "TicketNotFoundError",
    "TicketSearch",
    "TicketSystem",
    "TicketSystemError",
    "TimeTrigger",
    "Trigger",
    "TriggerHost",
    "__version__",
    "build",
    "load_config",
    "parse_config",
]
