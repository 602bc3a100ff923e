"""The config models, named as the orchestrator's original description names them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from open_ticket_ai.core.durations import Duration

__all__ = [
    "AppConfig",
    "HttpListenerConfig",
    "LedgerConfig",
    "LoggingConfig",
    "OrchestratorConfig",
    "PipeConfig",
    "RetryConfig",
    "RunnerDefinition",
    "ServiceDefinition",
    "TriggerDefinition",
]

DEFAULT_PIPE = "CompositePipe"
DEFAULT_TRIGGER = "IntervalTrigger"


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class RetryConfig(_ConfigModel):
    """How a pipe is retried: ``attempts`` in all, waiting ``delay * backoff**n`` between them.

    Without ``on`` every exception and every failed result is retried; with ``on`` only
    exceptions whose class (or a base class) has one of the names, and failed results when
    ``Failure`` is among them.
    """

    attempts: int = Field(3, ge=1, le=100)
    delay: Duration = Field(1.0, ge=0)
    backoff: float = Field(2.0, ge=1.0)
    max_delay: Duration = Field(300.0, ge=0)
    on: list[str] = Field(default_factory=list)

    _norm_on = field_validator("on", mode="before")(_one_or_many)


class PipeConfig(_ConfigModel):
    """One pipe: a component (``use``) with ``params``, or a composite of ``steps``."""

    id: str = Field(min_length=1)
    use: str = DEFAULT_PIPE
    params: dict[str, Any] = Field(default_factory=dict)
    steps: list[PipeConfig] = Field(default_factory=list)
    if_: bool | int | float | str | None = Field(default=None, alias="if")
    depends_on: list[str] = Field(default_factory=list)
    retry: RetryConfig | None = None
    timeout: Duration | None = Field(default=None, gt=0)
    for_each: str | list[Any] | None = None
    """A template giving a list (or a list): the pipe runs once per item, with ``item``."""
    concurrency: int = Field(1, ge=1, le=100)
    """With ``for_each``: how many items run at once (results stay in item order)."""

    _norm_depends = field_validator("depends_on", mode="before")(_one_or_many)

    @field_validator("params", mode="before")
    @classmethod
    def _null_params(cls, value: Any) -> Any:
        return {} if value is None else value


class TriggerDefinition(_ConfigModel):
    """A trigger. With ``use`` or ``params`` it is a definition (``use`` defaulting to the
    interval trigger); an ``id`` alone names a trigger defined under another runner."""

    id: str = Field(min_length=1)
    use: str | None = None
    params: dict[str, Any] | None = None

    @property
    def is_reference(self) -> bool:
        return self.use is None and self.params is None

    @property
    def component(self) -> str:
        return self.use or DEFAULT_TRIGGER


class RunnerDefinition(_ConfigModel):
    """A runner: its triggers (``on``; none means run once at start) and its pipeline."""

    id: str = Field(min_length=1)
    on: list[TriggerDefinition] = Field(default_factory=list)
    run: PipeConfig
    overlap: Literal["skip", "queue_one"] = "skip"
    """A fire while the runner still runs: ``skip`` it, or keep at most one waiting."""
    timeout: Duration | None = Field(default=None, gt=0)
    """The longest a run may take; it is then cancelled and recorded as timed out."""
    deadline: Duration | None = Field(600.0, gt=0)
    """After this long no new step or ``for_each`` item of a run begins: those left are
    skipped and counted, and the run fails saying so (a step already running goes on; see
    ``timeout`` to cancel it). ``false``: no deadline."""

    @field_validator("deadline", mode="before")
    @classmethod
    def _no_deadline(cls, value: Any) -> Any:
        if value is True:
            raise ValueError("give a duration, or false for no deadline")
        return None if value is False else value

    starting_deadline: Duration | None = Field(default=None, gt=0)
    """With ``state_path``: how late an overdue fire may still be caught up after a restart."""

    @field_validator("on", mode="before")
    @classmethod
    def _triggers(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            return [{"id": item} if isinstance(item, str) else item for item in value]
        return value


class ConsoleUser(_ConfigModel):
    """One person who may log in to the console: an argon2 hash of the password (``otai
    console add-user NAME`` makes one) and a role: ``viewer`` reads, ``admin`` also fires,
    pauses and corrects."""

    password_hash: str = Field(min_length=1)
    role: Literal["viewer", "admin"] = "viewer"


class HttpListenerConfig(_ConfigModel):
    """The built-in HTTP listener for webhook triggers and ``otai trigger``."""

    host: str = Field("127.0.0.1", min_length=1)
    """The address to listen on; ``0.0.0.0`` (or ``::``) for every interface, on purpose."""
    port: int = Field(8765, ge=0, le=65535)
    token: str | None = None
    """The bearer token ``otai trigger`` must send; without one, manual fires are refused."""
    max_body_bytes: int = Field(1_048_576, ge=1)
    max_connections: int = Field(1000, ge=1)
    """Connections open at once; beyond, requests get 503 until one closes."""
    head_timeout: Duration = Field(10.0, gt=0)
    """Seconds a client has to send a whole request head once it began one (slowloris)."""
    metrics: bool = False
    """Serve ``GET /metrics`` (Prometheus); it needs the token when one is set."""
    console: bool = False
    """Serve the operator's console at ``/`` (it needs ``console_users``)."""
    console_users: dict[str, ConsoleUser] = Field(default_factory=dict)
    console_secret: str | None = None
    """Signs the console's session cookies (may be ``"{{ env.NAME }}"``); without one, a
    random key is drawn at start and sessions end when the service restarts."""
    secure_cookies: bool = False
    """Send the session cookie only over HTTPS: set it when a TLS proxy is in front."""

    @model_validator(mode="after")
    def _console_needs_users(self) -> HttpListenerConfig:
        if self.console and not self.console_users:
            raise ValueError(
                "console: true needs console_users (add one with `otai console add-user NAME`)"
            )
        return self


class LedgerConfig(_ConfigModel):
    """Where the run ledger is kept and for how long. ``ledger: false`` turns it off."""

    enabled: bool = True
    path: str | None = None
    """A SQLite file; relative to the config file's directory. Default
    ``var/otai-ledger.sqlite`` there (a config given as text, not a file, has no default)."""
    retention: Duration = Field(30 * 86400.0, gt=0)
    """Runs older than this are pruned (in the background)."""
    max_runs: int = Field(1_000_000, ge=1)
    """At most this many runs are kept, whatever their age."""


class LoggingConfig(_ConfigModel):
    """What ``otai run`` logs and where, when its ``--log-level`` and ``--log-file`` are not
    given (they win over these)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    """The least severe level logged (default ``INFO``)."""
    file: str | None = Field(default=None, min_length=1)
    """A file that gets every log line too (appended to), besides stderr; relative to the
    config file's directory."""


class OrchestratorConfig(_ConfigModel):
    """The runners and how the orchestrator runs them."""

    runners: list[RunnerDefinition] = Field(default_factory=list)
    max_concurrent_runs: int | None = Field(default=None, ge=1)
    shutdown_timeout: Duration = Field(30.0, ge=0)
    """How long running executions may finish after a stop request before they are cancelled."""
    cancel_timeout: Duration = Field(5.0, gt=0)
    """How long a cancelled execution may take to end; one that ignores cancellation longer
    is abandoned (logged with its runner) and the process exits without it."""
    http: HttpListenerConfig | None = None
    """Start the HTTP listener (it also starts, with defaults, when a trigger needs it)."""
    state_path: str | Literal[False] | None = None
    """A SQLite file keeping each runner's last fire and outcome across restarts, held
    locked while the service runs, so that a second ``otai run`` of the same config refuses
    to start. Default: ``var/otai-state.sqlite`` relative to the config file's directory (a
    config given as text has none); ``false`` runs without one."""
    watchdog: Duration | None = Field(default=None, gt=0)
    """Log which runner and step ran when the event loop was blocked longer than this."""
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    """The record of every run, its actions and decisions (``otai runs``)."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """``otai run``'s log level and log file (its command-line options win)."""

    @field_validator("state_path", mode="before")
    @classmethod
    def _state_switch(cls, value: Any) -> Any:
        if value is True:
            raise ValueError("give a file, or false to run without one")
        if value == "":
            raise ValueError("give a file, or false to run without one")
        return value

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger_switch(cls, value: Any) -> Any:
        if value is False:
            return {"enabled": False}
        if value is True or value is None:
            return {}
        return value


class ServiceDefinition(_ConfigModel):
    """A shared component (a ticket system, a classifier) that pipes name by ``id``."""

    id: str = Field(min_length=1)
    use: str
    params: dict[str, Any] = Field(default_factory=dict)


class AppConfig(_ConfigModel):
    """The whole config, whichever root form the file used."""

    plugins: list[str] = Field(default_factory=list)
    plugin_paths: list[str] = Field(default_factory=list)
    """Directories searched for plugin modules (``plugins:`` and ``use: "module:Class"``),
    relative to the config file's directory, after that directory itself."""
    services: list[ServiceDefinition] = Field(default_factory=list)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    env_allowlist: list[str] = Field(default_factory=list)
