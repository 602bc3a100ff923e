"""open-ticket-ai: a helpdesk automation orchestrator driven by one YAML file.

The public plugin API: subclass :class:`Pipe`, :class:`TimeTrigger` or :class:`EventTrigger`,
or :class:`Service`, declare ``Params`` as a :class:`ParamsModel`, and name the class in a config
with ``use: "your_module:YourClass"``.
"""

from open_ticket_ai.core.component import NoParams, ParamsModel
from open_ticket_ai.core.config import AppConfig, load_config, parse_config
from open_ticket_ai.core.factory import CompiledConfig, build
from open_ticket_ai.core.orchestration.trigger import EventTrigger, TimeTrigger, Trigger
from open_ticket_ai.core.pipes import Pipe, PipeContext, PipeResult
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import (
    ComponentError,
    ConfigError,
    OpenTicketAIError,
    PipeError,
    Problem,
    TemplateError,
)

__version__ = "0.1.0"

__all__ = [
    "AppConfig",
    "CompiledConfig",
    "ComponentError",
    "ConfigError",
    "EventTrigger",
    "NoParams",
    "OpenTicketAIError",
    "ParamsModel",
    "Pipe",
    "PipeContext",
    "PipeError",
    "PipeResult",
    "Problem",
    "Registry",
    "Service",
    "TemplateError",
    "TimeTrigger",
    "Trigger",
    "__version__",
    "build",
    "load_config",
    "parse_config",
]
