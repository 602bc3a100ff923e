"""``otai demo setup``: a helpdesk full of sample tickets and models trained on them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from open_ticket_ai.demo.sample_tickets import EXPECTED_QUEUE, SampleTicket, sample_tickets
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem

__all__ = ["demo"]

INCOMING = "Incoming"


@click.group()
def demo() -> None:
    """The demo: an embedded helpdesk with sample tickets, and models trained on them."""


@demo.command("setup")
@click.option(
    "--dir", "directory", default="var/demo", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--tickets", "count", default=400, show_default=True, type=click.IntRange(50, 10_000))
@click.option(
    "--incoming",
    default=30,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many of them wait unsorted in the Incoming queue.",
)
@click.option("--force", is_flag=True, help="Start over: a new helpdesk and new models.")
def setup(directory: str, count: int, incoming: int, force: bool) -> None:
    """Create DIR/helpdesk.sqlite with sample tickets in English and German (most already
    sorted into their queues by a "human", some waiting in Incoming), then train
    DIR/queue-model.otai and DIR/priority-model.otai on the sorted ones."""
    from open_ticket_ai.classification.training import train, training_steps

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    db = root / "helpdesk.sqlite"
    models = {"queue": root / "queue-model.otai", "priority": root / "priority-model.otai"}
    if force:
        for path in (db, *models.values()):
            path.unlink(missing_ok=True)
    samples = sample_tickets(count, seed=7)
    waiting, done = samples[:incoming], samples[incoming:]
    if db.exists():
        click.echo(f"{db}: exists, kept (use --force to start over)")
    else:
        asyncio.run(_seed(db, waiting, done))
        click.echo(f"{db}: {len(done)} sorted tickets, {len(waiting)} waiting in {INCOMING}")
    labels = {
        "queue": [(s.text, s.queue) for s in done],
        "priority": [(s.text, s.priority.label) for s in done],
    }
    for name, path in models.items():
        if path.exists():
            click.echo(f"{path}: exists, kept")
            continue
        folds = 5
        label = f"Training the {name} model ({len(labels[name])} tickets, {folds}-fold check)"
        with click.progressbar(length=training_steps(folds), label=label) as bar:
            model = train(labels[name], folds=folds, on_step=lambda _: bar.update(1))
        model.save(path)
        accuracy = model.metrics.accuracy if model.metrics is not None else float("nan")
        click.echo(f"{path}: {name} model, cross-validated accuracy {accuracy:.1%}")


async def _seed(db: Path, waiting: list[SampleTicket], done: list[SampleTicket]) -> None:
    system = SqliteTicketSystem(SqliteParams(path=str(db), create=True), id="helpdesk")
    await system.open()
    try:
        for sample in done:
            await system.create(sample.as_new_ticket())
        for sample in waiting:
            new = sample.as_new_ticket().model_copy(
                update={
                    "queue": INCOMING,
                    "priority": None,
                    "custom_fields": {EXPECTED_QUEUE: sample.queue},
                }
            )
            await system.create(new)
    finally:
        await system.close()
