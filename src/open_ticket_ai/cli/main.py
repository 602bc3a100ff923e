"""The ``otai`` command. Signal handling and logging set-up live here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from open_ticket_ai.cli.console import console
from open_ticket_ai.cli.demo import demo
from open_ticket_ai.cli.log_format import configure_logging
from open_ticket_ai.cli.migrate import migrate_command
from open_ticket_ai.cli.once import print_run
from open_ticket_ai.cli.params import config_input, duration_value
from open_ticket_ai.cli.runs import runs
from open_ticket_ai.cli.schema import config_schema
from open_ticket_ai.cli.status import status_command
from open_ticket_ai.cli.tickets import tickets
from open_ticket_ai.cli.train import train_command
from open_ticket_ai.cli.trigger import trigger_command
from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.core.factory import CompiledConfig, build
from open_ticket_ai.core.pipes.run import worker_threads
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.http.listener import start_listener
from open_ticket_ai.runtime.events import RunEnded
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.runtime.startup import prepare

__all__ = ["main"]

EXIT_CONFIG = 2


def _build(config: str | None) -> CompiledConfig:
    try:
        return build(load_config(config))
    except OpenTicketAIError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)


@click.group()
@click.version_option(package_name="ticketflow-orchestrator")
def cli() -> None:
    """open-ticket-ai: keeps helpdesk automation pipelines running on time."""


@cli.command()
@config_input
def validate(config: str | None) -> None:
    """Check CONFIG (default: $OTAI_CONFIG, else ./config.yml) and exit 0 if it is valid.

    Besides the config's form, it checks what would fail at run time: template names, the
    steps a template asks about, service ids, environment variables (a warning when one is
    not set here: it may be where the service runs)."""
    compiled = _build(config)
    for notice in compiled.loaded.notices:
        click.echo(f"note: {notice}", err=True)
    for warning in compiled.warnings:
        click.echo(f"warning: {warning}", err=True)
    runners = len(compiled.runners)
    click.echo(
        f"{compiled.loaded.source.file}: ok, {runners} runner{'s' if runners != 1 else ''}, "
        f"{len(compiled.triggers)} trigger{'s' if len(compiled.triggers) != 1 else ''}, "
        f"{compiled.pipe_count} pipe{'s' if compiled.pipe_count != 1 else ''}"
    )


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the config file, for editors (see docs/plugins.md)."""
    try:
        document = config_schema()
    except OpenTicketAIError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(json.dumps(document, indent=2))


@cli.command()
@config_input
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="The least severe level logged (default: the config's orchestrator.logging.level, "
    "else INFO).",
)
@click.option(
    "--log-format", default="text", show_default=True, type=click.Choice(["text", "json"])
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Also append every log line to this file (default: the config's "
    "orchestrator.logging.file, else none).",
)
@click.option(
    "--shutdown-timeout",
    callback=duration_value,
    help="How long running executions may finish after SIGINT/SIGTERM (default: the config's "
    "orchestrator.shutdown_timeout, 30s).",
)
@click.option(
    "--once",
    "once",
    metavar="RUNNER_ID",
    help="Run this runner's pipeline now, print each step's status and value, and exit 0 when "
    "it succeeded, 1 when not.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Change nothing outside: ticket updates, notes, new tickets and non-GET HTTP requests "
    "are recorded as what they would do, and not done.",
)
def run(
    config: str | None,
    log_level: str | None,
    log_format: str,
    log_file: str | None,
    shutdown_timeout: float | None,
    once: str | None,
    dry_run: bool,
) -> None:
    """Run the runners of CONFIG until SIGINT/SIGTERM (or until one-time runners finish)."""
    configure_logging(log_level or "INFO", log_format, Path(log_file) if log_file else None)
    try:
        orchestrator = prepare(
            lambda: load_config(config),
            shutdown_timeout=shutdown_timeout,
            listener=start_listener,
            dry_run=dry_run,
        )
    except OpenTicketAIError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    settings = orchestrator.compiled.loaded.config.orchestrator.logging
    if (settings.level and not log_level) or (settings.file and not log_file):
        # The config's logging, where the command line leaves it open; before anything runs.
        configured = orchestrator.compiled.file_beside(settings.file, "") if settings.file else None
        configure_logging(
            log_level or settings.level or "INFO",
            log_format,
            Path(log_file) if log_file else configured,
        )
    if once is not None and once not in orchestrator.runners:
        known = ", ".join(orchestrator.runners) or "none"
        click.echo(f"--once: no runner {once!r} (runners: {known})", err=True)
        orchestrator.close()
        sys.exit(EXIT_CONFIG)
    try:
        code = run_bounded(_serve(orchestrator, once), grace=orchestrator.cancel_timeout)
    except OpenTicketAIError as exc:
        logging.getLogger("open_ticket_ai").error("%s", exc)
        code = 1
    if orchestrator.stubborn or worker_threads.busy:
        # Runs that ignore cancellation, and sync pipes blocked in worker threads, would keep
        # the interpreter from exiting: they were given their deadline and are abandoned.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)


def run_bounded(main: Coroutine[Any, Any, int], *, grace: float) -> int:
    """``asyncio.run``, except that tasks left over at the end get ``grace`` seconds to end
    after their cancellation, not forever: a run that swallows cancellations must not keep
    the process from exiting (the orchestrator already reported it as abandoned)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=grace))
            for task in left:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    loop.call_exception_handler(
                        {"message": "task failed at shutdown", "exception": task.exception()}
                    )
            with contextlib.suppress(TimeoutError):
                loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), grace))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class _WorkerPool(ThreadPoolExecutor):
    """The loop's default executor: shutting it down never waits for a blocked thread."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


async def _serve(orchestrator: Orchestrator, once: str | None) -> int:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(_WorkerPool(thread_name_prefix="otai-sync-pipe"))

    def on_signal(signum: int, frame: object) -> None:
        # A Python-level handler runs as soon as the main thread runs Python again, even
        # while a pipe blocks the loop: no new run starts after this, whatever the loop
        # handles first; the stop request follows on the loop.
        orchestrator.halt()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
            loop.call_soon_threadsafe(orchestrator.request_stop)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if once is not None:
            ended: list[RunEnded] = []
            orchestrator.bus.subscribe(ended.append, RunEnded, name="once")
            result = await orchestrator.run_once(once)
            if ended:
                print_run(ended[-1])
            return 0 if result.succeeded else 1
        return await orchestrator.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


cli.add_command(tickets)
cli.add_command(train_command, "train")
cli.add_command(demo)
cli.add_command(trigger_command)
cli.add_command(runs)
cli.add_command(status_command)
cli.add_command(console)
cli.add_command(migrate_command)


def main() -> None:
    cli(prog_name="otai")
