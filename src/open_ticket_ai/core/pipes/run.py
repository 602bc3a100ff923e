"""Executing pipes: the run's shared state, the context a pipe sees, and the step rules
(``if``, ``depends_on``, params rendering, ``retry``, ``timeout``)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from open_ticket_ai.core.config.models import RetryConfig
from open_ticket_ai.core.config.validation import issues_of
from open_ticket_ai.core.config.yaml_source import format_path
from open_ticket_ai.core.durations import format_duration
from open_ticket_ai.core.pipes.context import RunContext, RunResults, TriggerRef
from open_ticket_ai.core.pipes.pipe import Pipe
from open_ticket_ai.core.pipes.records import Action, Decision, StepReport
from open_ticket_ai.core.pipes.result import PipeResult, PipeStatus
from open_ticket_ai.core.services import Service
from open_ticket_ai.core.templates import (
    CompiledTemplate,
    FailRequested,
    RenderTree,
    render_tree,
    truthy,
)
from open_ticket_ai.errors import ComponentError, OpenTicketAIError, TemplateError

__all__ = [
    "CURRENT_STEP",
    "PipeContext",
    "PipeSpec",
    "RunContext",
    "RunResults",
    "TriggerRef",
    "execute_pipe",
    "worker_threads",
]

_MISSING: Any = object()

CURRENT_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "otai_current_step", default=None
)
"""The config path of the step a task executes (the watchdog reads it from a blocked task)."""

TASK_CONTEXTS: dict[asyncio.Task[Any], contextvars.Context] = {}
"""The context each task of a run runs in (the run's own, and those of ``for_each`` items run
at once), so that another thread (the watchdog) can read the task's context variables
(``Task.get_context`` exists only from Python 3.12). An entry goes when its task is done."""

ServiceT = TypeVar("ServiceT", bound=Service[Any])
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class PipeSpec:
    """A pipe config compiled at load time: its class, templates and step rules."""

    id: str
    path: str
    pipe_class: type[Pipe[Any]]
    params_tree: RenderTree
    static_params: BaseModel | None
    """The validated params when they hold no template (validated once, at load)."""
    static_raw: Mapping[str, Any] | None
    condition: CompiledTemplate | bool | int | float | str | None
    depends_on: tuple[str, ...]
    retry: RetryConfig | None
    timeout: float | None
    steps: tuple[PipeSpec, ...]
    for_each: Any = None
    """None, a list, or a CompiledTemplate giving the list the pipe iterates over."""
    concurrency: int = 1
    """How many ``for_each`` items run at once."""

    @property
    def has_condition(self) -> bool:
        return self.condition is not None

    @property
    def asks_about_outcomes(self) -> bool:
        """True when ``if:`` calls ``has_failed`` or ``has_succeeded``: a fallback step."""
        return isinstance(self.condition, CompiledTemplate) and not self.condition.calls.isdisjoint(
            ("has_failed", "has_succeeded")
        )


class PipeContext:
    """What a pipe's ``process`` receives: the run, its own spec, and its nested steps."""

    __slots__ = ("parent", "raw_params", "run", "spec")

    def __init__(self, run: RunContext, spec: PipeSpec, raw_params: Mapping[str, Any]) -> None:
        self.run = run
        self.spec = spec
        self.raw_params = raw_params

    @property
    def steps(self) -> tuple[PipeSpec, ...]:
        return self.spec.steps

    async def run_step(self, step: PipeSpec) -> PipeResult:
        """Run a nested step with this pipe's rendered params as its ``parent``."""
        parent = self.raw_params
        if not isinstance(parent, ParentParams):
            parent = self.raw_params = ParentParams(parent)
        return await execute_pipe(step, self.run, parent)

    def skip_step(self, step: PipeSpec, message: str) -> PipeResult:
        """Record a nested step as skipped without running it."""
        result = PipeResult.skip(message)
        self.run.results[step.id] = result
        return result

    def result(self, id: str) -> PipeResult | None:
        return self.run.results.get(id)

    @property
    def dry_run(self) -> bool:
        """True in ``otai run --dry-run``: a pipe that changes the outside world then records
        the action it would take (:meth:`record_action`) and changes nothing."""
        return self.run.journal.dry_run

    def record_action(self, action: Action) -> None:
        """Report a change this pipe made outside the process (or, in a dry run, would
        make): it is kept with the run, counted in its summary line and stored in the
        ledger."""
        journal = self.run.journal
        journal.actions.append(replace(action, step=self.spec.path, dry_run=journal.dry_run))

    def record_decision(self, decision: Decision) -> None:
        """Report a classification this pipe made (label, confidence, fallback)."""
        self.run.journal.decisions.append(replace(decision, step=self.spec.path))

    def service(self, id: str, kind: type[ServiceT]) -> ServiceT:
        """The shared service ``id``, checked to be a ``kind``."""
        found = self.run.services.get(id)
        if found is None:
            known = ", ".join(sorted(self.run.services)) or "none"
            raise ComponentError(f"{self.spec.path}: no service {id!r} (services: {known})")
        if not isinstance(found, kind):
            raise ComponentError(
                f"{self.spec.path}: service {id!r} is a {type(found).__name__}, "
                f"not a {kind.__name__}"
            )
        return found


_NO_PARENT: Mapping[str, Any] = {}


class ParentParams(dict[str, Any]):
    """The enclosing pipe's rendered params as nested steps see them: ``parent.X``, and
    ``parent.params.X`` as Open Ticket AI templates write it."""

    @property
    def params(self) -> ParentParams:
        return self


def _parent_names(parent: Mapping[str, Any]) -> dict[str, Any]:
    """What templates see of the enclosing pipe: ``parent`` and ``params`` (ours), and
    ``parent_params`` and ``get_parent_param(name)`` (Open Ticket AI's)."""
    return {
        "parent": parent,
        "params": parent,
        "parent_params": parent,
        "get_parent_param": parent.get,
    }


_LATE = "not started: the run's deadline of {} had passed"
_new_tuple = tuple.__new__
_FAILED = PipeStatus.FAILED
_SKIPPED = PipeStatus.SKIPPED


async def execute_pipe(
    spec: PipeSpec, run: RunContext, parent: Mapping[str, Any] | None = None
) -> PipeResult:
    """Run one pipe by the step rules and record its result under its id."""
    parent = parent if parent is not None else _NO_PARENT
    if spec.for_each is not None:
        started = time.monotonic()
        result, items = await _for_each(spec, run, parent)
        run.results[spec.id] = result
        _report(run, spec, result, started, 1, items)
        return result
    return await _execute(spec, run, parent)


async def _execute(spec: PipeSpec, run: RunContext, parent: Mapping[str, Any]) -> PipeResult:
    journal = run.journal
    deadline = journal.deadline
    if deadline is not None and deadline.clock() >= deadline.at:
        deadline.skipped += 1
        late = PipeResult.skip(_LATE.format(format_duration(deadline.limit)))
        run.results[spec.id] = late
        _report(run, spec, late, 0.0, 0)
        return late
    started = time.monotonic() if journal.steps is not None else 0.0
    params = spec.static_params
    raw = spec.static_raw
    if params is None or raw is None or spec.depends_on or spec.condition is not None:
        prepared = _prepare(spec, run, parent)
        if isinstance(prepared, PipeResult):
            run.results[spec.id] = prepared
            _report(run, spec, prepared, 0.0, 0)  # ended before it ran: no time, no attempt
            return prepared
        params, raw = prepared
    retry = spec.retry
    attempt = 1
    token = CURRENT_STEP.set(spec.path)
    try:
        while True:
            result, raised = await _attempt(spec, run, params, raw)
            # Only failures are retried: a pipe that reports "skipped" has decided not to act.
            if result.status is not _FAILED or retry is None or attempt >= retry.attempts:
                break
            if not _should_retry(result, raised, retry):
                break
            delay = min(retry.delay * retry.backoff ** (attempt - 1), retry.max_delay)
            if journal.on_retry is not None:
                journal.on_retry(spec.path, attempt, delay, result.message)
            await asyncio.sleep(delay)
            attempt += 1
    finally:
        CURRENT_STEP.reset(token)
    if attempt > 1 and result.status is _FAILED:
        result = PipeResult.failure(
            f"{result.message} (after {attempt} attempts)", result.data, result.error
        )
    run.results[spec.id] = result
    _report(run, spec, result, started, attempt)
    return result


def _report(
    run: RunContext,
    spec: PipeSpec,
    result: PipeResult,
    started: float,
    attempts: int,
    items: tuple[PipeStatus, ...] = (),
) -> None:
    """Add the step's report to the run's journal (not inside ``for_each`` items)."""
    steps = run.journal.steps
    if steps is not None:
        duration = time.monotonic() - started if started else 0.0
        # tuple.__new__ skips the named tuple's Python-level __new__: one is made per step.
        steps.append(
            _new_tuple(
                StepReport,
                (spec.path, spec.id, result.status, duration, attempts, result.message, items),
            )
        )


def _unmet_dependency(spec: PipeSpec, run: RunContext) -> PipeResult | None:
    for needed in spec.depends_on:
        if not run.has_succeeded(needed):
            return PipeResult.skip(f"skipped: dependency {needed!r} did not succeed")
    return None


async def _for_each(
    spec: PipeSpec, run: RunContext, parent: Mapping[str, Any]
) -> tuple[PipeResult, tuple[PipeStatus, ...]]:
    """Run the pipe once per item; one item's failure is recorded and the others go on.
    Returns the result and each item's status."""
    unmet = _unmet_dependency(spec, run)
    if unmet is not None:
        return unmet, ()
    try:
        if isinstance(spec.for_each, CompiledTemplate):
            items = spec.for_each.render({**run.template_vars, **_parent_names(parent)})
        else:
            items = spec.for_each
    except (TemplateError, FailRequested) as exc:
        return PipeResult.failure(str(exc), error=exc), ()
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        return PipeResult.failure(
            f"{spec.path}.for_each: must give a list, got {type(items).__name__}"
        ), ()
    items = list(items)
    count = len(items)
    slots: list[dict[str, Any] | None] = [None] * count
    results: list[PipeResult | None] = [None] * count
    deadline = run.journal.deadline
    taken = 0

    async def work() -> None:
        """Run items, each taken in order by whichever worker is free, until none is left."""
        nonlocal taken
        while taken < count:
            index = taken
            taken += 1
            if deadline is not None and deadline.clock() >= deadline.at:
                # No item begins after the run's deadline: the rest are skipped, counted.
                late = _LATE.format(format_duration(deadline.limit))
                deadline.skipped += count - index
                for i in range(index, count):
                    slots[i] = {
                        "index": i,
                        "status": _SKIPPED,
                        "message": late,
                        "data": {},
                        "steps": {},
                    }
                taken = count
                return
            child = run.for_item(items[index], index, count)
            result = results[index] = await _execute(spec, child, parent)
            slots[index] = {
                "index": index,
                "status": result.status,
                "message": result.message,
                "data": dict(result.data),
                "steps": {
                    k: v.status
                    for k, v in child.results.items()
                    if k not in run.results and k != spec.id
                },
            }

    workers = min(spec.concurrency, count)
    if workers <= 1:
        await work()
    else:
        await _together(work, workers)
    outcomes = [slot for slot in slots if slot is not None]
    assert len(outcomes) == count
    first_failure = next(
        ((i, r) for i, r in enumerate(results) if r is not None and r.failed), None
    )
    counts = {status: 0 for status in ("succeeded", "failed", "skipped")}
    for outcome in outcomes:
        counts[outcome["status"]] += 1
    data = {"items": outcomes, "count": len(items), **counts}
    statuses = tuple(outcome["status"] for outcome in outcomes)
    if first_failure is not None:
        index, failed = first_failure
        return PipeResult.failure(
            f"{counts['failed']} of {len(items)} items failed; item {index}: {failed.message}",
            data,
            failed.error,
        ), statuses
    return PipeResult.success(data), statuses


async def _together(work: Callable[[], Coroutine[Any, Any, None]], count: int) -> None:
    """Run ``count`` copies of ``work`` at once, each a task of its own (and so with its own
    context: each item's current step, for the watchdog); when this is cancelled, or one
    raises (a bug: ``work`` reports failures as results), the others are cancelled and
    waited for before it propagates, so that no item goes on after its run has ended."""
    loop = asyncio.get_running_loop()
    tasks = []
    for _ in range(count):
        context = contextvars.copy_context()
        task = loop.create_task(work(), context=context)
        TASK_CONTEXTS[task] = context
        task.add_done_callback(_forget_context)
        tasks.append(task)
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise


def _forget_context(task: asyncio.Task[Any]) -> None:
    TASK_CONTEXTS.pop(task, None)


def _prepare(
    spec: PipeSpec, run: RunContext, parent: Mapping[str, Any]
) -> PipeResult | tuple[BaseModel, Mapping[str, Any]]:
    """Apply ``depends_on`` and ``if``, render and validate params: the params to run with,
    or the result (skipped or failed) that ends the step before it runs."""
    if spec.depends_on and spec.for_each is None:
        unmet = _unmet_dependency(spec, run)
        if unmet is not None:
            return unmet

    context: dict[str, Any] | None = None
    if spec.condition is not None:
        context = {**run.template_vars, **_parent_names(parent)}
        try:
            if isinstance(spec.condition, CompiledTemplate):
                wanted = spec.condition.render(context)
            else:
                wanted = spec.condition
        except (TemplateError, FailRequested) as exc:
            return PipeResult.failure(str(exc), error=exc)
        if not truthy(wanted):
            return PipeResult.skip("skipped: condition is false")

    if spec.static_params is not None and spec.static_raw is not None:
        return spec.static_params, spec.static_raw
    if context is None:
        context = {**run.template_vars, **_parent_names(parent)}
    try:
        raw = render_tree(spec.params_tree, context)
        return spec.pipe_class.Params.model_validate(raw), raw
    except (FailRequested, TemplateError) as exc:
        return PipeResult.failure(str(exc), error=exc)
    except ValidationError as exc:
        return PipeResult.failure(_describe_params_error(spec, exc), error=exc)
    except Exception as exc:  # a plugin's validator may raise anything
        return PipeResult.failure(f"{spec.path}.params: {type(exc).__name__}: {exc}", error=exc)


async def _attempt(
    spec: PipeSpec, run: RunContext, params: BaseModel, raw: Mapping[str, Any]
) -> tuple[PipeResult, bool]:
    """One attempt's result, and whether it comes from a raised exception."""
    ctx = PipeContext(run, spec, raw)
    timer = asyncio.timeout(spec.timeout) if spec.timeout is not None else None
    pipe_name = spec.pipe_class.__name__
    try:
        pipe = spec.pipe_class(params, id=spec.id)
        if timer is None:
            if spec.pipe_class.is_async:  # the common case, without another coroutine
                outcome = await pipe.process(ctx)  # type: ignore[misc]
            else:
                outcome = await _call(pipe, ctx)
        else:
            async with timer:
                outcome = await _call(pipe, ctx)
    except TimeoutError as exc:
        if timer is not None and timer.expired():
            assert spec.timeout is not None
            message = f"timed out after {format_duration(spec.timeout)}"
            return PipeResult.failure(message, error=exc), True
        return PipeResult.failure(f"TimeoutError: {exc}", error=exc), True
    except TemplateError as exc:  # its message names the template's place
        return PipeResult.failure(str(exc), error=exc), True
    except OpenTicketAIError as exc:  # a helpdesk that refused, a pipe's own error
        return PipeResult.failure(_at(spec, str(exc)), error=exc), True
    except Exception as exc:
        return PipeResult.failure(_at(spec, f"{type(exc).__name__}: {exc}"), error=exc), True
    if not isinstance(outcome, PipeResult):
        message = f"{pipe_name}.process returned {type(outcome).__name__}, not a PipeResult"
        return PipeResult.failure(message), False
    return outcome, False


def _at(spec: PipeSpec, message: str) -> str:
    """A raised error's message with the step's config path in front: one line that says
    where and why (a pipe's returned failure is worded by the pipe)."""
    return message if message.startswith(spec.path) else f"{spec.path}: {message}"


class _WorkerThreads:
    """Counts sync ``process`` calls still running in worker threads, including those whose
    run was cancelled: a thread cannot be stopped, and shutdown must know it is there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        return self._busy

    def run(self, pipe: Pipe[Any], ctx: PipeContext) -> Any:
        return self.run_call(pipe.process, ctx)

    def run_call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``, counted (call it in the worker thread)."""
        with self._lock:
            self._busy += 1
        try:
            return function(*args)
        finally:
            with self._lock:
                self._busy -= 1


worker_threads = _WorkerThreads()


async def _call(pipe: Pipe[Any], ctx: PipeContext) -> Any:
    if type(pipe).is_async:
        return await pipe.process(ctx)  # type: ignore[misc]
    outcome = await asyncio.to_thread(worker_threads.run, pipe, ctx)
    if inspect.isawaitable(outcome):  # a decorated ``async def`` that does not look async
        outcome = await outcome
    return outcome


def _should_retry(result: PipeResult, raised: bool, retry: RetryConfig) -> bool:
    """Without ``on`` everything is retried. ``Failure`` names a returned failed result; other
    names match the class (or a base class) of the exception behind the failure, raised or
    attached to a returned result."""
    if not retry.on:
        return True
    if not raised and "Failure" in retry.on:
        return True
    if result.error is None:
        return False
    names = {cls.__name__ for cls in type(result.error).__mro__}
    return not names.isdisjoint(retry.on)


def _describe_params_error(spec: PipeSpec, exc: ValidationError) -> str:
    """Each problem of rendered params, worded as load-time problems are, with its path."""
    return "; ".join(
        f"{_param_where(spec, issue.loc)}: {issue.message}"
        for issue in issues_of(exc, spec.pipe_class.Params)
    )


def _param_where(spec: PipeSpec, loc: tuple[str | int, ...]) -> str:
    """Where the param at ``loc`` is written: the template that produced it knows its line."""
    node: Any = spec.params_tree
    for index, part in enumerate((*loc, None)):
        if isinstance(node, CompiledTemplate):
            rest = loc[index:]
            return node.path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
        if part is None:
            break
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return f"{spec.path}.{format_path(('params', *loc))}"
