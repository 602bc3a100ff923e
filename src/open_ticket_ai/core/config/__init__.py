"""Config models and the YAML loader."""

from open_ticket_ai.core.config.loader import LoadedConfig, find_config, load_config, parse_config
from open_ticket_ai.core.config.models import (
    AppConfig,
    OrchestratorConfig,
    PipeConfig,
    RetryConfig,
    RunnerDefinition,
    ServiceDefinition,
    TriggerDefinition,
)

__all__ = [
    "AppConfig",
    "LoadedConfig",
    "OrchestratorConfig",
    "PipeConfig",
    "RetryConfig",
    "RunnerDefinition",
    "ServiceDefinition",
    "TriggerDefinition",
    "find_config",
    "load_config",
    "parse_config",
]
