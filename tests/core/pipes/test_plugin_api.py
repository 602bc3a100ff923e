"""The plugin API for pipes: subclass ``Pipe``, declare ``Params``, implement ``process``."""

from __future__ import annotations

import asyncio
import functools
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, field_validator, model_validator

import open_ticket_ai
from open_ticket_ai import (
    ConfigError,
    NoParams,
    ParamsModel,
    Pipe,
    PipeContext,
    PipeError,
    PipeResult,
    Service,
    build,
    parse_config,
)
from open_ticket_ai.core.pipes.run import RunContext, execute_pipe

HERE = __name__


def config(steps: str, *, top: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 8)
    return (
        f"{top}orchestrator:\n  runners:\n    - id: r\n      run:\n        id: main\n"
        f"        steps:\n{body}\n"
    )


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in config")


async def run_config(text: str) -> tuple[PipeResult, RunContext]:
    compiled = build(parse_config(text, "config.yml"))
    run = RunContext(runner="r")
    async with asyncio.timeout(60):
        result = await execute_pipe(compiled.runners[0].pipeline, run)
    return result, run


def build_problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    return {p.path: p.message for p in caught.value.problems}


# -- PipeResult -----------------------------------------------------------------------------


def test_pipe_result_success() -> None:
    result = PipeResult.success({"value": 1}, message="done")
    assert (result.succeeded, result.skipped, result.failed) == (True, False, False)
    assert result.status == "succeeded"
    assert result.message == "done"
    assert result.data == {"value": 1}
    assert PipeResult.success().data == {}


def test_pipe_result_failure_keeps_the_error() -> None:
    error = ValueError("bad")
    result = PipeResult.failure("it broke", {"partial": 1}, error=error)
    assert (result.succeeded, result.skipped, result.failed) == (False, False, True)
    assert result.status == "failed"
    assert result.data == {"partial": 1}
    assert result.error is error


def test_pipe_result_skip() -> None:
    result = PipeResult.skip("not needed")
    assert (result.succeeded, result.skipped, result.failed) == (False, True, False)
    assert result.status == "skipped"
    assert result.message == "not needed"


def test_pipe_result_is_frozen_and_copies_its_data() -> None:
    data = {"value": 1}
    result = PipeResult.success(data)
    data["value"] = 2
    assert result.data == {"value": 1}
    with pytest.raises(FrozenInstanceError):
        result.message = "changed"  # type: ignore[misc]


def test_the_plugin_api_is_public() -> None:
    for name in ("Pipe", "PipeResult", "PipeContext", "ParamsModel", "NoParams", "PipeError"):
        assert name in open_ticket_ai.__all__
    assert open_ticket_ai.Pipe is Pipe


# -- Params ---------------------------------------------------------------------------------


class GreetParams(ParamsModel):
    name: str
    times: int = 1


class GenericGreet(Pipe[GreetParams]):
    """Params from the generic argument."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        assert isinstance(self.params, GreetParams)
        return PipeResult.success(
            {"value": " ".join([f"hi {self.params.name}"] * self.params.times)}
        )


class AttributeGreet(Pipe):  # type: ignore[type-arg]
    """Params as a class attribute."""

    Params = GreetParams

    async def process(self, ctx: PipeContext) -> PipeResult:
        assert isinstance(self.params, GreetParams)
        return PipeResult.success({"value": f"hello {self.params.name}"})


class LoudGreet(GenericGreet):
    """Inherits its Params."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        result = await super().process(ctx)
        return PipeResult.success({"value": str(result.data["value"]).upper()})


class Plain(Pipe):  # type: ignore[type-arg]
    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": type(self.params).__name__})


def test_params_come_from_the_generic_argument_or_the_attribute() -> None:
    assert GenericGreet.Params is GreetParams
    assert AttributeGreet.Params is GreetParams
    assert LoudGreet.Params is GreetParams
    assert Plain.Params is NoParams


async def test_plugins_get_validated_params() -> None:
    text = config(
        f"""
        - id: generic
          use: "{HERE}:GenericGreet"
          params: {{name: Ada, times: 2}}
        - id: attribute
          use: "{HERE}:AttributeGreet"
          params: {{name: Bob}}
        - id: loud
          use: "{HERE}.LoudGreet"
          params: {{name: "{{{{ 'c' ~ 'y' }}}}", times: "{{{{ 1 + 1 }}}}"}}
        - id: plain
          use: "{HERE}:Plain"
        """
    )
    result, run = await run_config(text)
    assert result.succeeded, result.message
    assert run.results["generic"].data == {"value": "hi Ada hi Ada"}
    assert run.results["attribute"].data == {"value": "hello Bob"}
    assert run.results["loud"].data == {"value": "HI CY HI CY"}
    assert run.results["plain"].data == {"value": "NoParams"}


def test_invalid_static_params_are_config_errors_with_the_path() -> None:
    text = config(
        f"""
        - id: a
          use: "{HERE}:GenericGreet"
          params: {{name: Ada, times: many}}
        - id: b
          use: "{HERE}:GenericGreet"
          params: {{nme: Bob}}
        - id: c
          use: "{HERE}:Plain"
          params: {{anything: 1}}
        - id: d
          use: "{HERE}:GenericGreet"
          params: {{times: "{{{{ 2 }}}}"}}
        """
    )
    problems = build_problems(text)
    assert "many" in problems["orchestrator.runners[0].run.steps[0].params.times"]
    assert "name" in problems["orchestrator.runners[0].run.steps[1].params.nme"]
    assert "anything" in problems["orchestrator.runners[0].run.steps[2].params.anything"]
    assert "required" in problems["orchestrator.runners[0].run.steps[3].params.name"]


class StrictParams(ParamsModel):
    count: int = 0
    options: dict[str, int] = {}
    items: list[int] = []


class Strict(Pipe[StrictParams]):
    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": self.params.model_dump()})


@pytest.mark.parametrize(
    ("params", "where", "shown"),
    [
        ("{count: \"{{ 'many' }}\"}", "params.count", "'many'"),
        ("{options: {limit: \"{{ 'x' }}\"}}", "params.options.limit", "'x'"),
        ("{items: [1, \"{{ 'two' }}\"]}", "params.items[1]", "'two'"),
        ('{count: "{{ [1] }}"}', "params.count", "integer"),
        ("{options: \"{{ {'limit': 'x'} }}\"}", "params.options.limit", "'x'"),
    ],
)
async def test_templated_params_that_fail_validation_fail_the_step(
    params: str, where: str, shown: str
) -> None:
    text = config(f'- id: s\n  use: "{HERE}:Strict"\n  params: {params}\n')
    result, run = await run_config(text)
    message = run.results["s"].message
    line = line_of(text, "params:")
    assert run.results["s"].failed
    assert f"config.yml:{line} orchestrator.runners[0].run.steps[0].{where}: " in message
    assert shown in message
    assert result.failed


class RangeParams(ParamsModel):
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> RangeParams:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


class Range(Pipe[RangeParams]):
    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success()


async def test_a_params_wide_problem_names_the_params() -> None:
    text = config(
        f"""
        - id: range
          use: "{HERE}:Range"
          params:
            low: "{{{{ 5 }}}}"
            high: 1
        """
    )
    _, run = await run_config(text)
    assert run.results["range"].message == (
        f"config.yml:{line_of(text, 'id: range')} orchestrator.runners[0].run.steps[0].params: "
        "low must not exceed high"
    )


async def test_templated_params_render_and_coerce() -> None:
    text = config(
        f"""
        - id: s
          use: "{HERE}:Strict"
          params:
            count: "{{{{ 6 * 7 }}}}"
            options: {{limit: "{{{{ '5' }}}}"}}
            items: ["{{{{ 1 }}}}", 2]
        """
    )
    _, run = await run_config(text)
    assert run.results["s"].data == {
        "value": {"count": 42, "options": {"limit": 5}, "items": [1, 2]}
    }


async def test_every_invalid_templated_param_is_reported() -> None:
    text = config(
        f'- id: s\n  use: "{HERE}:Strict"\n'
        "  params: {count: \"{{ 'a' }}\", items: [\"{{ 'b' }}\"]}\n"
    )
    _, run = await run_config(text)
    message = run.results["s"].message
    assert "params.count" in message
    assert "params.items[0]" in message


class ExplodingParams(ParamsModel):
    value: str

    @field_validator("value")
    @classmethod
    def _explode(cls, value: str) -> str:
        if value == "boom":
            raise TypeError("validator exploded")
        return value


class Exploding(Pipe[ExplodingParams]):
    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success()


async def test_a_params_validator_that_raises_fails_the_step() -> None:
    text = config(
        f"""
        - id: e
          use: "{HERE}:Exploding"
          params: {{value: "{{{{ 'boom' }}}}"}}
        - id: fallback
          if: "{{{{ has_failed('e') }}}}"
          use: ExpressionPipe
          params: {{expression: ran}}
        """
    )
    result, run = await run_config(text)
    assert run.results["e"].failed
    assert "TypeError: validator exploded" in run.results["e"].message
    assert "orchestrator.runners[0].run.steps[0].params" in run.results["e"].message
    assert run.results["fallback"].succeeded
    assert result.failed


# -- process ----------------------------------------------------------------------------------


class AsyncWhere(Pipe):  # type: ignore[type-arg]
    async def process(self, ctx: PipeContext) -> PipeResult:
        asyncio.get_running_loop()
        return PipeResult.success({"thread": threading.get_ident()})


SYNC_STARTED = threading.Event()
SYNC_RELEASE = threading.Event()


class SyncWhere(Pipe):  # type: ignore[type-arg]
    """Blocks its thread until a coroutine on the loop releases it."""

    def process(self, ctx: PipeContext) -> PipeResult:
        SYNC_STARTED.set()
        released = SYNC_RELEASE.wait(timeout=10)
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        return PipeResult.success(
            {"thread": threading.get_ident(), "released": released, "in_loop": in_loop}
        )


@pytest.fixture
def _sync_events() -> Iterator[None]:
    SYNC_STARTED.clear()
    SYNC_RELEASE.clear()
    yield
    SYNC_RELEASE.set()


async def test_an_async_process_runs_on_the_event_loop() -> None:
    result, _ = await run_config(config(f'- id: a\n  use: "{HERE}:AsyncWhere"\n'))
    assert result.succeeded
    assert AsyncWhere.is_async is True


@pytest.mark.usefixtures("_sync_events")
async def test_a_plain_process_runs_in_a_worker_thread_while_the_loop_serves() -> None:
    assert SyncWhere.is_async is False
    compiled = build(parse_config(config(f'- id: s\n  use: "{HERE}:SyncWhere"\n'), "config.yml"))
    run = RunContext(runner="r")
    loop_thread = threading.get_ident()
    ticks = 0

    async def meanwhile() -> None:
        nonlocal ticks
        assert await asyncio.to_thread(SYNC_STARTED.wait, 10)
        for _ in range(3):  # the loop keeps running coroutines while the pipe blocks
            await asyncio.sleep(0.001)
            ticks += 1
        SYNC_RELEASE.set()

    async with asyncio.timeout(30):
        await asyncio.gather(execute_pipe(compiled.runners[0].pipeline, run), meanwhile())
    data = run.results["s"].data
    assert run.results["s"].succeeded
    assert data["released"] is True
    assert data["thread"] != loop_thread
    assert data["in_loop"] is False
    assert ticks == 3


async def test_async_process_thread_is_the_loop_thread() -> None:
    _, run = await run_config(config(f'- id: a\n  use: "{HERE}:AsyncWhere"\n'))
    assert run.results["a"].data["thread"] == threading.get_ident()


def passthrough(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


class Decorated(Pipe):  # type: ignore[type-arg]
    """An ``async def process`` behind a plain decorator: it no longer looks async."""

    @passthrough
    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": "decorated"})


async def test_a_decorated_async_process_is_awaited() -> None:
    _, run = await run_config(config(f'- id: d\n  use: "{HERE}:Decorated"\n'))
    assert run.results["d"].succeeded, run.results["d"].message
    assert run.results["d"].data == {"value": "decorated"}


class Misbehaving(Pipe):  # type: ignore[type-arg]
    async def process(self, ctx: PipeContext) -> PipeResult:
        return {"value": 1}  # type: ignore[return-value]


class Raising(Pipe[GreetParams]):
    async def process(self, ctx: PipeContext) -> PipeResult:
        if self.params.name == "pipe-error":
            raise PipeError("ticket 7 is locked")
        raise LookupError(f"no ticket for {self.params.name}")


class BrokenInit(Pipe):  # type: ignore[type-arg]
    def __init__(self, params: Any, *, id: str = "") -> None:
        raise RuntimeError("cannot build")

    async def process(self, ctx: PipeContext) -> PipeResult:
        raise AssertionError("never runs")


class NoProcess(Pipe):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (f'use: "{HERE}:Misbehaving"', "Misbehaving.process returned dict, not a PipeResult"),
        (f'use: "{HERE}:Raising"\n  params: {{name: Ada}}', "LookupError: no ticket for Ada"),
        (f'use: "{HERE}:Raising"\n  params: {{name: pipe-error}}', "ticket 7 is locked"),
        (f'use: "{HERE}:BrokenInit"', "RuntimeError: cannot build"),
        (f'use: "{HERE}:NoProcess"', "NotImplementedError: NoProcess does not implement"),
    ],
)
async def test_a_misbehaving_pipe_fails_its_step(step: str, message: str) -> None:
    text = config(
        f"- id: bad\n  {step}\n"
        "- id: fallback\n  if: \"{{ has_failed('bad') }}\"\n"
        "  use: ExpressionPipe\n  params: {expression: ran}\n"
    )
    result, run = await run_config(text)
    assert run.results["bad"].failed
    where = "" if "returned" in message else "config.yml:7 orchestrator.runners[0].run.steps[0]: "
    assert run.results["bad"].message.startswith(where + message)
    assert run.results["fallback"].succeeded
    assert result.message.startswith(f"step 'bad' failed: {where}{message}")


class CountingPipe(Pipe):  # type: ignore[type-arg]
    instances: ClassVar[list[CountingPipe]] = []

    def __init__(self, params: NoParams, *, id: str = "") -> None:
        super().__init__(params, id=id)
        type(self).instances.append(self)

    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": self.id})


async def test_a_pipe_is_built_fresh_for_every_execution() -> None:
    CountingPipe.instances.clear()
    compiled = build(parse_config(config(f'- id: c\n  use: "{HERE}:CountingPipe"\n'), "x.yml"))
    for _ in range(2):
        run = RunContext(runner="r")
        await execute_pipe(compiled.runners[0].pipeline, run)
        assert run.results["c"].data == {"value": "c"}
    first, second = CountingPipe.instances
    assert first is not second


class ContextReader(Pipe[StrictParams]):
    """Reports what the context offers."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        earlier = ctx.result("first")
        return PipeResult.success(
            {
                "id": self.id,
                "runner": ctx.run.runner,
                "earlier": earlier.data if earlier is not None else None,
                "unknown": ctx.result("nope"),
                "raw": dict(ctx.raw_params),
                "path": ctx.spec.path,
                "steps": ctx.steps,
            }
        )


async def test_the_context_gives_the_run_the_spec_and_earlier_results() -> None:
    text = config(
        f"""
        - id: first
          use: ExpressionPipe
          params: {{expression: 5}}
        - id: reader
          use: "{HERE}:ContextReader"
          params: {{count: "{{{{ pipe_result('first') }}}}"}}
        """
    )
    _, run = await run_config(text)
    data = run.results["reader"].data
    assert data["id"] == "reader"
    assert data["runner"] == "r"
    assert data["earlier"] == {"value": 5}
    assert data["unknown"] is None
    assert data["raw"] == {"count": 5}
    assert (
        data["path"]
        == f"config.yml:{line_of(text, 'id: reader')} orchestrator.runners[0].run.steps[1]"
    )
    assert data["steps"] == ()


class NeedsService(Pipe):  # type: ignore[type-arg]
    async def process(self, ctx: PipeContext) -> PipeResult:
        ctx.service("tickets", Service)
        return PipeResult.success()


async def test_asking_for_a_missing_service_fails_the_step() -> None:
    _, run = await run_config(config(f'- id: s\n  use: "{HERE}:NeedsService"\n'))
    assert run.results["s"].failed
    assert "no service 'tickets'" in run.results["s"].message


def test_a_pipe_class_cannot_take_steps() -> None:
    text = config(
        f"""
        - id: g
          use: "{HERE}:Plain"
          steps:
            - id: inner
              use: ExpressionPipe
              params: {{expression: 1}}
        """
    )
    problems = build_problems(text)
    assert "orchestrator.runners[0].run.steps[0].steps" in problems


class NotAPipe(BaseModel):
    x: int = 0


def test_use_must_name_a_pipe_class() -> None:
    problems = build_problems(config(f'- id: n\n  use: "{HERE}:NotAPipe"\n'))
    assert "orchestrator.runners[0].run.steps[0].use" in problems


# -- a plugin module on sys.path --------------------------------------------------------------

PLUGIN_SOURCE = """
from pydantic import BaseModel

from open_ticket_ai import Pipe, PipeContext, PipeResult


class ShoutParams(BaseModel):
    text: str


class Shout(Pipe[ShoutParams]):
    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": self.params.text.upper() + "!"})


class Whisper(Pipe):
    Params = ShoutParams

    def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": self.params.text.lower()})
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"otai_test_plugin_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


async def test_a_plugin_module_from_sys_path(plugin_module: str) -> None:
    text = config(
        f"""
        - id: shout
          use: "{plugin_module}:Shout"
          params: {{text: "{{{{ 'hey' }}}}"}}
        - id: whisper
          use: "{plugin_module}.Whisper"
          params: {{text: "{{{{ pipe_result('shout') }}}}"}}
        """
    )
    result, run = await run_config(text)
    assert result.succeeded, result.message
    assert run.results["shout"].data == {"value": "HEY!"}
    assert run.results["whisper"].data == {"value": "hey!"}


async def test_a_plugin_module_listed_under_plugins_gives_short_names(plugin_module: str) -> None:
    text = config(
        """
        - id: shout
          use: Shout
          params: {text: hi}
        """,
        top=f"plugins: [{plugin_module}]\n",
    )
    _, run = await run_config(text)
    assert run.results["shout"].data == {"value": "HI!"}
