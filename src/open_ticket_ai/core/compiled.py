"""What building a config produces: runners ready to arm, shared triggers and services."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from open_ticket_ai.core.config.loader import LoadedConfig
from open_ticket_ai.core.config.yaml_source import SourceMap
from open_ticket_ai.core.pipes.run import PipeSpec
from open_ticket_ai.core.services import Service
from open_ticket_ai.core.triggers.base import Trigger
from open_ticket_ai.errors import Problem

__all__ = ["CompiledConfig", "RunnerSpec", "path_beside"]


def path_beside(config_file: str | Path, configured: str | None, default: str) -> Path:
    """A file of the config at ``config_file``: ``configured``, else ``default``; a relative
    path is relative to the config file's directory, so that the service and the commands
    that read its files find the same ones from any working directory."""
    path = Path(configured).expanduser() if configured else Path(default)
    return path if path.is_absolute() else Path(config_file).parent / path


@dataclass(frozen=True)
class RunnerSpec:
    """A runner ready to arm: its trigger ids, its compiled pipeline and its timing rules."""

    id: str
    where: str
    triggers: tuple[str, ...]
    pipeline: PipeSpec
    overlap: str = "skip"
    """``skip`` a fire while running, or ``queue_one`` (at most one waiting)."""
    timeout: float | None = None
    """Seconds a run may take before it is cancelled and recorded as timed out."""
    deadline: float | None = None
    """Seconds after which no new step or ``for_each`` item of a run begins."""
    starting_deadline: float | None = None
    """With persisted state: how late a fire missed while down may still be caught up."""

    @property
    def one_time(self) -> bool:
        return not self.triggers


@dataclass(frozen=True)
class CompiledConfig:
    """The whole config built: runners, shared triggers and services, the template env."""

    loaded: LoadedConfig
    runners: tuple[RunnerSpec, ...]
    triggers: Mapping[str, Trigger[Any]]
    services: Mapping[str, Service[Any]]
    env: Mapping[str, str]
    warnings: tuple[Problem, ...] = ()
    """What may fail or idle at run time (``otai validate`` prints these; the config runs)."""

    def file_beside(self, configured: str | None, default: str) -> Path | None:
        """:func:`path_beside` for this config; None when nothing is configured and the
        config is text with no file (and so no directory)."""
        config_file = Path(self.loaded.source.file)
        if configured is None and not config_file.is_file():
            return None
        return path_beside(config_file, configured, default)

    def without_load_state(self) -> CompiledConfig:
        """The same config without what only loading needed: the source map and the runner
        definitions (every runner is compiled into ``runners``). A long-running service keeps
        just what it runs: for 10,000 runners that is tens of megabytes less."""
        loaded = self.loaded
        settings = loaded.config.orchestrator.model_copy(update={"runners": []})
        config = loaded.config.model_copy(update={"orchestrator": settings})
        light = dataclasses.replace(
            loaded,
            config=config,
            source=SourceMap(loaded.source.file),
            runner_paths=(),
            service_paths=(),
        )
        return dataclasses.replace(self, loaded=light)

    @property
    def pipe_count(self) -> int:
        def count(spec: PipeSpec) -> int:
            return 1 + sum(count(step) for step in spec.steps)

        return sum(count(runner.pipeline) for runner in self.runners)
