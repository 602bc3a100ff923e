"""Shared by the tests of Open Ticket AI's formats: where the configs are, the swap of a
config's helpdesk and models on the parsed config (never by editing a file), the compiled
specs two configs are compared by, and the embedded helpdesk the runs use."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from open_ticket_ai.core.compiled import CompiledConfig
from open_ticket_ai.core.config.loader import LoadedConfig
from open_ticket_ai.core.config.models import PipeConfig
from open_ticket_ai.core.pipes.run import PipeSpec
from open_ticket_ai.core.templates import CompiledTemplate
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import NewTicket, TicketSearch

HERE = Path(__file__).parent / "upstream_configs"
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "compat" / "upstream"
SHARED_FILES = sorted(p.name for p in SHARED.glob("*.yml")) if SHARED.is_dir() else []
ABSENT = f"the upstream configs are absent ({SHARED})"

PASSWORDS = {
    name: "never-sent"
    for name in (
        "OTAI_E2E_OTOBO_PASSWORD",
        "OTAI_OTOBO_DEMO_PASSWORD",
        "OTAI_ZNUNY_PASSWORD",
        "OTAI_OTOBO_ZNUNY_PASSWORD",
        "OTAI_HF_TOKEN",
    )
}
"""The variables the shared files read (none of them reaches a helpdesk: tests swap it)."""


def _tree(value: Any) -> Any:
    if isinstance(value, CompiledTemplate):
        return ("template", value.source)
    if isinstance(value, dict):
        return {key: _tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tree(item) for item in value]
    return value


def pipe_spec(spec: PipeSpec) -> tuple[Any, ...]:
    return (
        spec.id,
        spec.pipe_class,
        _tree(spec.params_tree),
        _tree(spec.condition),
        spec.depends_on,
        spec.retry,
        spec.timeout,
        _tree(spec.for_each),
        tuple(pipe_spec(step) for step in spec.steps),
    )


def specs(compiled: CompiledConfig) -> dict[str, Any]:
    """What two configs must agree on to do the same: every runner (id, triggers, timing,
    the compiled pipeline: ids, classes, params, conditions, retries), trigger and service."""
    config = compiled.loaded.config
    return {
        "runners": [
            (r.id, r.triggers, r.overlap, r.timeout, r.deadline, pipe_spec(r.pipeline))
            for r in compiled.runners
        ],
        "triggers": {k: (type(t), t.params) for k, t in compiled.triggers.items()},
        "services": {k: (type(s), s.params) for k, s in compiled.services.items()},
        "logging": config.orchestrator.logging,
        "plugins": config.plugins,
    }


def _swap_models(params: dict[str, Any], queue: Path, priority: Path) -> dict[str, Any]:
    swapped = dict(params)
    for key in ("model_name", "queue_model", "priority_model"):
        value = swapped.get(key)
        if isinstance(value, str) and "{{" not in value:
            swapped[key] = str(priority if "priority" in f"{key} {value}".lower() else queue)
    return swapped


def _swap_pipe(pipe: PipeConfig, queue: Path, priority: Path) -> PipeConfig:
    return pipe.model_copy(
        update={
            "params": _swap_models(pipe.params, queue, priority),
            "steps": [_swap_pipe(step, queue, priority) for step in pipe.steps],
        }
    )


def swapped(loaded: LoadedConfig, db: Path, queue: Path, priority: Path) -> LoadedConfig:
    """``loaded`` with its OTOBO/Znuny service as the embedded helpdesk at ``db`` and its
    models as the local ones: the addresses in the file are never contacted."""
    config = loaded.config
    services = [
        s.model_copy(update={"use": "SqliteTicketSystem", "params": {"path": str(db)}})
        if "Znuny" in s.use
        else s
        for s in config.services
    ]
    runners = [
        r.model_copy(update={"run": _swap_pipe(r.run, queue, priority)})
        for r in config.orchestrator.runners
    ]
    orchestrator = config.orchestrator.model_copy(update={"runners": runners})
    return dataclasses.replace(
        loaded,
        config=config.model_copy(update={"services": services, "orchestrator": orchestrator}),
    )


async def _desk(db: Path) -> SqliteTicketSystem:
    desk = SqliteTicketSystem(SqliteParams(path=str(db)))
    await desk.open()
    return desk


def seed(db: Path, queue: str, ticket_id: str | None = None) -> None:
    """One ticket in ``queue`` (with ``ticket_id`` as its id when given)."""

    async def go() -> None:
        desk = await _desk(db)
        try:
            await desk.create(
                NewTicket(
                    subject="Invoice charged twice",
                    body="We were billed twice for the March invoice, please refund one.",
                    queue=queue,
                )
            )
        finally:
            await desk.close()

    asyncio.run(go())
    if ticket_id is not None:
        import sqlite3

        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE tickets SET id = ?", (ticket_id,))


def tickets(db: Path) -> list[dict[str, Any]]:
    """Every ticket of the helpdesk: subject, queue, priority label, and its notes' bodies."""

    async def go() -> list[dict[str, Any]]:
        desk = await _desk(db)
        try:
            found = await desk.search(TicketSearch(limit=100))
            return [
                {
                    "subject": t.subject,
                    "queue": t.queue,
                    "priority": t.priority.label if t.priority is not None else None,
                    "notes": [n.body for n in await desk.notes(t.id)],
                }
                for t in found
            ]
        finally:
            await desk.close()

    return asyncio.run(go())
