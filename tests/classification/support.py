"""Shared by the classification tests: models trained once per test session on the sample
tickets, and a config builder for ClassifyPipe runs."""

from __future__ import annotations

import asyncio
import functools
import textwrap
from typing import Any

from open_ticket_ai import build, parse_config
from open_ticket_ai.classification import SavedModel, train
from open_ticket_ai.core.pipes.result import PipeResult
from open_ticket_ai.core.pipes.run import RunContext, execute_pipe
from open_ticket_ai.demo import SampleTicket, sample_tickets

TRAIN_SEED = 7
HELD_OUT_SEED = 1234


def training_tickets() -> list[SampleTicket]:
    return sample_tickets(400, seed=TRAIN_SEED)


def held_out_tickets() -> list[SampleTicket]:
    """Tickets the models never saw (another seed gives other combinations)."""
    return sample_tickets(200, seed=HELD_OUT_SEED)


@functools.cache
def queue_model() -> SavedModel:
    """The scikit-learn queue model, trained once per session (3 folds, to save time)."""
    return train([(t.text, t.queue) for t in training_tickets()], folds=3)


def config(steps: str, *, top: str = "") -> str:
    """A one-runner config whose pipeline holds ``steps``, with ``top`` before it."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), " " * 8)
    return (
        f"{textwrap.dedent(top)}orchestrator:\n  runners:\n    - id: r\n      run:\n"
        f"        id: main\n        steps:\n{body}\n"
    )


async def run_config(text: str) -> tuple[PipeResult, RunContext]:
    """Build ``text``, open its services, run its runner once, close them."""
    compiled = build(parse_config(text, "config.yml"))
    services: dict[str, Any] = dict(compiled.services)
    for service in services.values():
        await service.open()
    try:
        run = RunContext(runner="r", services=services)
        async with asyncio.timeout(120):
            result = await execute_pipe(compiled.runners[0].pipeline, run)
    finally:
        for service in reversed(services.values()):
            await service.close()
    return result, run
