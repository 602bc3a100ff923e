"""The state of one run: results by id, the trigger that fired it, what templates see."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from open_ticket_ai.core.pipes.records import RunJournal
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.services import Service
from open_ticket_ai.errors import TemplateError

__all__ = ["EnvReader", "RunContext", "RunResults", "TriggerRef"]

_MISSING: Any = object()


class TriggerRef(str):
    """The id of the trigger that fired a run (a string), with its event ``payload``."""

    payload: Any

    def __new__(cls, id: str, payload: Any = None) -> TriggerRef:
        ref = super().__new__(cls, id)
        ref.payload = payload
        return ref

    @property
    def id(self) -> str:
        return str(self)


class RunResults(dict[str, PipeResult]):
    """Every step's result in one run, by id, and the template helpers that read them.

    Kept apart from :class:`RunContext` so that the helpers a template context holds never
    point back at the run: a run leaves no reference cycle for the collector to clear."""

    def pipe_result(self, id: str, key: str = "value", default: Any = _MISSING) -> Any:
        """``data[key]`` of the earlier step ``id``; ``default`` if given and absent."""
        result = self.get(id)
        if result is None:
            if default is not _MISSING:
                return default
            ran = ", ".join(repr(k) for k in self) or "none"
            raise TemplateError(f"no step {id!r} has run yet (steps run so far: {ran})")
        if key not in result.data:
            if default is not _MISSING:
                return default
            keys = ", ".join(repr(k) for k in result.data) or "none"
            raise TemplateError(f"step {id!r} ({result.status}) has no {key!r} (it has: {keys})")
        return result.data[key]

    def has_failed(self, id: str) -> bool:
        result = self.get(id)
        return result is not None and result.failed

    @property
    def data_of(self) -> Mapping[str, Mapping[str, Any]]:
        """Each earlier step's ``data`` by step id (``pipe_results['fetch']['value']``), as
        the run goes on."""
        return _StepData(self)

    def has_succeeded(self, id: str) -> bool:
        result = self.get(id)
        return result is not None and result.succeeded


class _StepData(Mapping[str, Mapping[str, Any]]):
    """A live view of a run's results: step id -> its ``data``."""

    __slots__ = ("_results",)

    def __init__(self, results: Mapping[str, PipeResult]) -> None:
        self._results = results

    def __getitem__(self, id: str) -> Mapping[str, Any]:
        return self._results[id].data

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


class EnvReader:
    """``get_env('NAME')``: an environment variable the config may read (starting with
    ``OTAI_`` or listed in ``env_allowlist``)."""

    __slots__ = ("_env",)

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(self, name: str, default: Any = _MISSING) -> Any:
        if name in self._env:
            return self._env[name]
        if default is not _MISSING:
            return default
        raise TemplateError(
            f"get_env({name!r}): environment variable {name} is not set, or not readable "
            "here (templates read variables starting with OTAI_ and those in env_allowlist)"
        )


class RunContext:
    """The state of one run of a pipeline: every step's result by id, and what templates see."""

    def __init__(
        self,
        *,
        runner: str | None = None,
        trigger: TriggerRef | None = None,
        services: Mapping[str, Service[Any]] | None = None,
        env: Mapping[str, str] | None = None,
        results: RunResults | None = None,
        extra: Mapping[str, Any] | None = None,
        journal: RunJournal | None = None,
    ) -> None:
        self.runner = runner
        self.journal = journal if journal is not None else RunJournal.recording()
        """The run's steps, actions and decisions (shared with its ``for_each`` items)."""
        self.trigger = trigger
        self.services: Mapping[str, Service[Any]] = services or {}
        self.results = results if results is not None else RunResults()
        self._env: Mapping[str, str] = env if env is not None else {}
        self._extra = extra
        self._template_vars: dict[str, Any] | None = None

    def for_item(self, item: Any, index: int, count: int) -> RunContext:
        """The context of one ``for_each`` iteration: it sees every result so far, and
        ``item`` and ``loop``; the results of its steps stay in the iteration."""
        loop = {"index": index, "first": index == 0, "last": index == count - 1, "length": count}
        return RunContext(
            runner=self.runner,
            trigger=self.trigger,
            services=self.services,
            env=self._env,
            results=RunResults(self.results),
            extra={**(self._extra or {}), "item": item, "loop": loop},
            journal=self._item_journal(),
        )

    def _item_journal(self) -> RunJournal:
        if self.journal.steps is None:
            return self.journal
        return self.journal.for_items()

    @property
    def template_vars(self) -> dict[str, Any]:
        """The names every template of this run sees (built on first use)."""
        if self._template_vars is None:
            results = self.results
            self._template_vars = {
                "pipe_result": results.pipe_result,
                "has_failed": results.has_failed,
                "has_succeeded": results.has_succeeded,
                "env": self._env,
                "runner": self.runner,
                "trigger": self.trigger,
                # The spellings of Open Ticket AI's templates.
                "get_pipe_result": results.pipe_result,
                "pipe_results": results.data_of,
                "get_env": EnvReader(self._env),
            }
            if self._extra:
                self._template_vars.update(self._extra)
        return self._template_vars

    def pipe_result(self, id: str, key: str = "value", default: Any = _MISSING) -> Any:
        """``data[key]`` of the earlier step ``id``; ``default`` if given and absent."""
        return self.results.pipe_result(id, key, default)

    def has_failed(self, id: str) -> bool:
        return self.results.has_failed(id)

    def has_succeeded(self, id: str) -> bool:
        return self.results.has_succeeded(id)
