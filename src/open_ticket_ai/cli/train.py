"""``otai train``: train a classifier model file and report how well it does."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from open_ticket_ai.classification.model import Metrics, SavedModel
from open_ticket_ai.classification.training import (
    Example,
    corrections_of,
    examples_from_tickets,
    read_examples,
    train,
    training_steps,
)
from open_ticket_ai.errors import OpenTicketAIError
from open_ticket_ai.tickets.models import TicketSearch

if TYPE_CHECKING:
    from open_ticket_ai.core.compiled import CompiledConfig
    from open_ticket_ai.tickets.system import TicketSystem

__all__ = [
    "fetched_queues",
    "format_confusion",
    "format_per_class",
    "sorted_examples",
    "train_command",
]

EXIT_CONFIG = 2
_PAGE = 200


@click.command("train")
@click.argument("data", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The model file to write.",
)
@click.option(
    "--label",
    help=(
        "What to predict: a column of DATA (default 'label'); for tickets queue (default),"
        " priority, state or a custom field."
    ),
)
@click.option(
    "--text-field",
    "text_fields",
    multiple=True,
    help="DATA columns that form the text (default: text, else subject and body); repeatable.",
)
@click.option(
    "--service",
    "service_id",
    metavar="ID",
    help="Train on the tickets of this ticket-system service of the config.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="The config declaring --service (default: $OTAI_CONFIG, else ./config.yml).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), help="Use at most this many tickets from --service."
)
@click.option(
    "--corrections",
    is_flag=True,
    help=(
        "With --service: the labels people set in the console's review queue (recorded in the"
        " config's run ledger) win over the tickets' own, and corrected tickets are included."
    ),
)
@click.option(
    "--exclude-queue",
    "exclude_queues",
    multiple=True,
    metavar="NAME",
    help=(
        "With --service: leave out the tickets in this queue (repeatable). The queues the"
        " config's FetchTicketsPipe steps read (tickets waiting to be sorted) are left out"
        " anyway."
    ),
)
@click.option(
    "--demo", is_flag=True, help="Train on the built-in sample tickets (English and German)."
)
@click.option(
    "--folds",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Cross-validation folds; 0 skips it.",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed for the folds and the model."
)
def train_command(
    data: str | None,
    output: str,
    label: str | None,
    text_fields: tuple[str, ...],
    service_id: str | None,
    config: str | None,
    limit: int | None,
    corrections: bool,
    exclude_queues: tuple[str, ...],
    demo: bool,
    folds: int,
    seed: int,
) -> None:
    """Train a classifier from DATA (a .csv or .jsonl file), the tickets of a helpdesk
    (--service), or the sample tickets (--demo); print per-class accuracy and the confusion
    matrix, and write the model file for ClassifierService or ClassifyPipe."""
    sources = [
        name
        for name, given in (("DATA", data), ("--service", service_id), ("--demo", demo))
        if given
    ]
    if len(sources) != 1:
        raise click.UsageError(
            "give exactly one of DATA, --service or --demo"
            + (f" (got {' and '.join(sources)})" if sources else "")
        )
    if corrections and service_id is None:
        raise click.UsageError("--corrections needs --service (the helpdesk they were made in)")
    if exclude_queues and service_id is None:
        raise click.UsageError("--exclude-queue needs --service (the helpdesk to train on)")
    try:
        examples, origin = _examples(
            data, label, text_fields, service_id, config, limit, corrections, exclude_queues
        )
        labels = sorted({example[1] for example in examples})
        click.echo(f"Read {len(examples)} examples of {len(labels)} labels from {origin}")
        started = time.perf_counter()
        with click.progressbar(length=training_steps(folds), label="Training") as bar:
            model = train(examples, folds=folds, seed=seed, on_step=lambda _: bar.update(1))
        seconds = time.perf_counter() - started
        path = model.save(output)
    except OpenTicketAIError as exc:
        raise click.ClickException(str(exc)) from exc
    _report(model, path, seconds)


def _examples(
    data: str | None,
    label: str | None,
    text_fields: tuple[str, ...],
    service_id: str | None,
    config: str | None,
    limit: int | None,
    corrections: bool = False,
    exclude_queues: tuple[str, ...] = (),
) -> tuple[list[Example], str]:
    if data is not None:
        found = read_examples(data, label=label or "label", text_fields=text_fields or None)
        return found, data
    if service_id is not None:
        found, fixed = asyncio.run(
            _from_service(config, service_id, label or "queue", limit, corrections, exclude_queues)
        )
        origin = f"service {service_id!r}"
        if corrections:
            origin += f" ({fixed} labels corrected in the console)"
        return found, origin
    from open_ticket_ai.demo import sample_tickets

    field = label or "queue"
    if field not in ("queue", "priority"):
        raise click.UsageError("with --demo, --label is queue or priority")
    tickets = sample_tickets()
    pairs = [(t.text, t.queue if field == "queue" else t.priority.label) for t in tickets]
    return pairs, "the sample tickets"


async def _from_service(
    config: str | None,
    service_id: str,
    label: str,
    limit: int | None,
    corrections: bool,
    exclude_queues: tuple[str, ...] = (),
) -> tuple[list[Example], int]:
    """The examples, and how many labels the console's corrections set."""
    from open_ticket_ai.core.config.loader import load_config
    from open_ticket_ai.core.factory import build
    from open_ticket_ai.tickets.system import TicketSystem

    try:
        compiled = build(load_config(config))
    except OpenTicketAIError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    services = compiled.services
    fixed = _corrections(compiled, service_id, label) if corrections else {}
    system: Any = services.get(service_id)
    if not isinstance(system, TicketSystem):
        systems = sorted(k for k, v in services.items() if isinstance(v, TicketSystem))
        raise click.UsageError(
            f"no ticket-system service {service_id!r} in the config "
            f"(ticket systems: {', '.join(systems) or 'none'})"
        )
    excluded = fetched_queues(compiled)
    for queue in exclude_queues:
        excluded.setdefault(queue, []).append("--exclude-queue")
    await system.open()
    try:
        found, left_out = await sorted_examples(
            system, label=label, limit=limit, corrections=fixed, excluded=set(excluded)
        )
    finally:
        await system.close()
    for queue, why in excluded.items():
        count = left_out.get(queue, 0)
        click.echo(
            f"Excluded queue {queue!r} ({', '.join(why)}): "
            f"{count} ticket{'' if count == 1 else 's'} left out"
        )
    return found, len(fixed)


def fetched_queues(compiled: CompiledConfig) -> dict[str, list[str]]:
    """Queue -> why it is excluded: the ``queue`` of every FetchTicketsPipe in the config's
    runners, whose tickets wait to be sorted. A queue given by a template is rendered with
    ``env`` (as services are); one that needs a run (``item``, ``pipe_result``) is reported
    and not excluded."""
    from open_ticket_ai.core.templates import render_tree
    from open_ticket_ai.errors import TemplateError
    from open_ticket_ai.tickets.pipes import FetchTicketsPipe

    found: dict[str, list[str]] = {}
    for runner in compiled.runners:
        specs = [runner.pipeline]
        while specs:
            spec = specs.pop(0)
            specs.extend(spec.steps)
            if not issubclass(spec.pipe_class, FetchTicketsPipe):
                continue
            if spec.static_params is not None:
                queue = getattr(spec.static_params, "queue", None)
            else:
                tree = spec.params_tree if isinstance(spec.params_tree, dict) else {}
                try:
                    queue = render_tree(tree.get("queue"), {"env": dict(compiled.env)})
                except TemplateError:
                    click.echo(
                        f"Not excluded: the queue of {spec.path} (runner {runner.id!r}) is known"
                        " only when it runs; name it with --exclude-queue",
                        err=True,
                    )
                    continue
            if isinstance(queue, str) and queue:
                reasons = found.setdefault(queue, [])
                reason = f"read by runner {runner.id!r}"
                if reason not in reasons:
                    reasons.append(reason)
    return found


async def sorted_examples(
    system: TicketSystem[Any],
    *,
    label: str,
    limit: int | None = None,
    corrections: Mapping[str, str] | None = None,
    excluded: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[Example], Counter[str]]:
    """:func:`examples_from_tickets` without the tickets in the ``excluded`` queues (those
    not sorted yet), and how many each queue left out. A corrected ticket is kept wherever
    it is: a person gave it its label."""
    left_out: Counter[str] = Counter()
    examples = await examples_from_tickets(
        system,
        label=label,
        search=TicketSearch(limit=_PAGE),
        limit=limit,
        corrections=corrections,
        excluded=excluded,
        left_out=left_out,
    )
    return examples, left_out


def _corrections(compiled: Any, service_id: str, label: str) -> dict[str, str]:
    from open_ticket_ai.runtime.ledger import (
        CONSOLE_RUNNER,
        LedgerError,
        SqliteLedgerStore,
        ledger_file_of,
    )

    path = ledger_file_of(compiled)
    if path is None:
        raise click.UsageError("--corrections needs the run ledger, and this config has none")
    try:
        store = SqliteLedgerStore(path, readonly=True)
    except LedgerError as exc:
        raise click.ClickException(f"--corrections: {exc}") from exc
    try:
        runs = store.runs(runner=CONSOLE_RUNNER, limit=1_000_000)
    finally:
        store.close()
    return corrections_of(runs, service_id, label)


def _report(model: SavedModel, path: Path, seconds: float) -> None:
    metrics = model.metrics
    if metrics is not None:
        click.echo(
            f"\nCross-validated accuracy: {metrics.accuracy:.1%} "
            f"({metrics.folds} folds, {metrics.samples} examples)\n"
        )
        click.echo(format_per_class(metrics))
        click.echo("\nConfusion matrix (rows: true label, columns: predicted)")
        click.echo(format_confusion(metrics))
    click.echo(
        f"\nSaved {path} ({len(model.labels)} labels: {', '.join(model.labels)}) in {seconds:.1f}s"
    )


def format_per_class(metrics: Metrics) -> str:
    """A table of each label's examples, accuracy (recall) and precision."""
    width = max(len("label"), *(len(c.label) for c in metrics.per_class))
    lines = [f"{'label':<{width}}  examples  accuracy  precision"]
    for c in metrics.per_class:
        lines.append(f"{c.label:<{width}}  {c.support:>8}  {c.accuracy:>8.1%}  {c.precision:>9.1%}")
    return "\n".join(lines)


def format_confusion(metrics: Metrics) -> str:
    """The confusion matrix with labels on both axes (long column labels are shortened)."""
    heads = [label if len(label) <= 12 else label[:11] + "…" for label in metrics.labels]
    numbers = [str(n) for row in metrics.confusion for n in row]
    cell = max(len(h) for h in [*heads, *numbers])
    first = max(len(label) for label in metrics.labels)
    lines = [" " * first + "".join(f"  {h:>{cell}}" for h in heads)]
    for label, row in zip(metrics.labels, metrics.confusion, strict=True):
        lines.append(f"{label:<{first}}" + "".join(f"  {n:>{cell}}" for n in row))
    return "\n".join(lines)
