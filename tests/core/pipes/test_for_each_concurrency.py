"""``for_each`` with ``concurrency: N``: items run up to N at a time, results stay in item
order, one item's failure touches no other, the run's deadline and its cancellation hold.

On the virtual clock: each item sleeps for a time it is given, so which items overlap is
decided by arithmetic, not by the machine's speed."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from open_ticket_ai import ConfigError, Pipe, PipeContext, PipeResult, build, parse_config
from open_ticket_ai.core.component import ParamsModel
from open_ticket_ai.core.pipes.records import RunDeadline, RunJournal
from open_ticket_ai.core.pipes.run import CURRENT_STEP, TASK_CONTEXTS, RunContext, execute_pipe

pytestmark = pytest.mark.virtual_clock

HERE = __name__

RUNNING: set[int] = set()
"""The items whose pipe is running now."""
MOST: list[int] = [0]
"""The most items seen running at once."""
STARTS: list[int] = []
"""Items in the order they started."""
ENDS: list[int] = []
"""Items in the order they ended (not cancelled)."""
STEPS: dict[int, str | None] = {}
"""The CURRENT_STEP each item's task saw while it ran."""


class ItemParams(ParamsModel):
    index: int
    sleep: float = 0.0
    fail: bool = False


class ItemPipe(Pipe[ItemParams]):
    """Sleeps ``sleep`` seconds, then succeeds with its index (or fails when told to)."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        index = self.params.index
        RUNNING.add(index)
        STARTS.append(index)
        MOST[0] = max(MOST[0], len(RUNNING))
        STEPS[index] = CURRENT_STEP.get()
        try:
            await asyncio.sleep(self.params.sleep)
        finally:
            RUNNING.discard(index)
        ENDS.append(index)
        if self.params.fail:
            return PipeResult.failure(f"item {index} refused")
        return PipeResult.success({"value": index * 10})


@pytest.fixture(autouse=True)
def _fresh() -> None:
    RUNNING.clear()
    MOST[0] = 0
    STARTS.clear()
    ENDS.clear()
    STEPS.clear()


def config(items: str, *, concurrency: int | None, extra: str = "") -> str:
    setting = f"concurrency: {concurrency}" if concurrency is not None else ""
    return textwrap.dedent(
        f"""\
        runners:
          - id: r
            run:
              id: each
              use: "{HERE}:ItemPipe"
              for_each: "{items}"
              {setting}
              params:
                index: "{{{{ item.index }}}}"
                sleep: "{{{{ item.sleep }}}}"
                fail: "{{{{ item.fail | default(false) }}}}"
              {extra}
        """
    )


def items(*sleeps: float, failing: tuple[int, ...] = ()) -> str:
    listed = ", ".join(
        f"{{'index': {i}, 'sleep': {s}, 'fail': {str(i in failing).lower()}}}"
        for i, s in enumerate(sleeps)
    )
    return "{{ [" + listed + "] }}"


async def run_config(text: str, journal: RunJournal | None = None) -> tuple[PipeResult, RunContext]:
    compiled = build(parse_config(text, "config.yml"))
    run = RunContext(runner="r", journal=journal)
    result = await execute_pipe(compiled.runners[0].pipeline, run)
    return result, run


async def test_items_run_up_to_concurrency_at_once() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result, _ = await run_config(config(items(*[1.0] * 10), concurrency=3))
    assert result.succeeded, result.message
    assert MOST[0] == 3
    # 10 items of 1 s, 3 at a time: 4 rounds.
    assert loop.time() - started == pytest.approx(4.0)


async def test_without_concurrency_items_run_one_after_another() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result, _ = await run_config(config(items(1.0, 1.0, 1.0), concurrency=None))
    assert result.succeeded
    assert MOST[0] == 1
    assert STARTS == [0, 1, 2]
    assert loop.time() - started == pytest.approx(3.0)


async def test_results_stay_in_item_order_whatever_order_items_end_in() -> None:
    result, _ = await run_config(config(items(3.0, 1.0, 2.0, 0.5), concurrency=4))
    assert result.succeeded
    assert ENDS == [3, 1, 2, 0]
    assert [entry["index"] for entry in result.data["items"]] == [0, 1, 2, 3]
    assert [entry["data"]["value"] for entry in result.data["items"]] == [0, 10, 20, 30]
    assert result.data["count"] == 4
    assert result.data["succeeded"] == 4


async def test_a_failing_item_touches_no_other_and_the_first_by_index_is_named() -> None:
    # Item 3 fails first in time, item 1 first in order: the message names item 1.
    text = config(items(0.5, 2.0, 0.5, 0.1, 0.5), concurrency=5, extra="")
    text = text.replace(
        "{'index': 1, 'sleep': 2.0, 'fail': false}", "{'index': 1, 'sleep': 2.0, 'fail': true}"
    )
    text = text.replace(
        "{'index': 3, 'sleep': 0.1, 'fail': false}", "{'index': 3, 'sleep': 0.1, 'fail': true}"
    )
    result, _ = await run_config(text)
    assert result.failed
    assert result.message == "2 of 5 items failed; item 1: item 1 refused"
    statuses = [entry["status"] for entry in result.data["items"]]
    assert statuses == ["succeeded", "failed", "succeeded", "failed", "succeeded"]
    assert sorted(ENDS) == [0, 1, 2, 3, 4]  # every item ran to its end


async def test_each_item_task_names_its_step_for_the_watchdog() -> None:
    result, _ = await run_config(config(items(0.5, 0.5, 0.5), concurrency=3))
    assert result.succeeded
    assert set(STEPS) == {0, 1, 2}
    assert all(step is not None and step.endswith("run") for step in STEPS.values()), STEPS
    assert not TASK_CONTEXTS  # every item task's entry went with it


async def test_no_item_begins_after_the_runs_deadline() -> None:
    loop = asyncio.get_running_loop()
    clock = loop.time
    journal = RunJournal.recording(deadline=RunDeadline(clock() + 2.5, 2.5, clock))
    result, _ = await run_config(config(items(*[1.0] * 10), concurrency=2), journal)
    # Rounds start at 0, 1, 2 s (two items each); at 3 s the deadline has passed.
    assert STARTS == [0, 1, 2, 3, 4, 5]
    statuses = [entry["status"] for entry in result.data["items"]]
    assert statuses == ["succeeded"] * 6 + ["skipped"] * 4
    assert journal.deadline is not None
    assert journal.deadline.skipped == 4


async def test_cancelling_the_run_cancels_every_item_and_waits_for_them() -> None:
    compiled = build(parse_config(config(items(*[5.0] * 6), concurrency=3), "config.yml"))
    run = RunContext(runner="r")
    task = asyncio.ensure_future(execute_pipe(compiled.runners[0].pipeline, run))
    await asyncio.sleep(1.0)
    assert sorted(RUNNING) == [0, 1, 2]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not RUNNING  # none goes on after its run ended
    assert ENDS == []
    await asyncio.sleep(10)
    assert STARTS == [0, 1, 2]  # and no later item began


def test_concurrency_without_for_each_is_a_config_error() -> None:
    text = textwrap.dedent(
        f"""\
        runners:
          - id: r
            run:
              id: one
              use: "{HERE}:ItemPipe"
              concurrency: 4
              params: {{index: 1}}
        """
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    message = str(caught.value)
    assert "config.yml:6" in message
    assert "concurrency applies to the items of a for_each pipe" in message


@pytest.mark.parametrize("value", ["0", "-1", "101", "lots"])
def test_a_concurrency_out_of_range_is_a_config_error(value: str) -> None:
    text = config(items(1.0), concurrency=None, extra=f"concurrency: {value}")
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    assert "concurrency" in str(caught.value)
