"""Ticket automation: tickets per second through fetch, classify, update and note (the `route`
runner of examples/ticket-routing.yml), on the embedded helpdesk and on a real Request Tracker
5; and classification latency per ticket for each backend. Prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT

SCRIPT = ROOT / "scripts" / "rt5-test-server.sh"
QUEUES = ("Incoming", "IT Support", "Billing", "Sales", "HR", "Review")


def _demo(directory: Path, incoming: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "open_ticket_ai", "demo", "setup", "--dir", str(directory),
         "--tickets", str(400 + incoming), "--incoming", str(incoming)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def _routing(
    directory: Path,
    helpdesk: dict[str, Any] | None = None,
    concurrency: int | None = None,
    limit: int | None = None,
) -> str:
    """examples/ticket-routing.yml with the demo's paths, optionally another helpdesk,
    another ``concurrency`` for its ``for_each`` over the fetched tickets, and another
    ``limit`` of tickets fetched per run."""
    import yaml

    from open_ticket_ai.core.config.yaml_source import load_yaml

    text = (ROOT / "examples" / "ticket-routing.yml").read_text()
    text = text.replace("{{ env.OTAI_DEMO_DIR | default('var/demo') }}", str(directory))
    document, _ = load_yaml(text, "ticket-routing.yml")
    if helpdesk is not None:
        services = document["open_ticket_ai"]["services"]
        services[:] = [helpdesk if s["id"] == "helpdesk" else s for s in services]
    [route] = [r for r in document["open_ticket_ai"]["orchestrator"]["runners"]
               if r["id"] == "route"]  # fmt: skip
    steps = {s["id"]: s for s in route["run"]["steps"]}
    if concurrency is not None:
        steps["each_ticket"]["concurrency"] = concurrency
    if limit is not None:
        steps["fetch"]["params"]["limit"] = limit
    return str(yaml.safe_dump(document, sort_keys=False))


async def _route(text: str) -> float:
    from open_ticket_ai import build, parse_config
    from open_ticket_ai.runtime.orchestrator import Orchestrator

    orchestrator = Orchestrator(build(parse_config(text, "ticket-routing.yml")))
    result = await orchestrator.run_once("route")
    if not result.succeeded:
        raise RuntimeError(result.message)
    # The run's own time: opening the services (loading both models) is not routing.
    duration = orchestrator.runners["route"].stats.last_duration
    assert duration is not None
    return duration


def embedded(directory: Path, tickets: int) -> float:
    """Tickets per second of one run of the route runner that routes all ``tickets``
    waiting (it fetches them all at once; none may be left in Incoming)."""
    import sqlite3
    from contextlib import closing

    elapsed = asyncio.run(_route(_routing(directory, limit=tickets)))
    with closing(sqlite3.connect(directory / "helpdesk.sqlite")) as db:
        (left,) = db.execute("SELECT COUNT(*) FROM tickets WHERE queue = 'Incoming'").fetchone()
    if left:
        raise RuntimeError(f"the route runner left {left} of {tickets} tickets in Incoming")
    return tickets / elapsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RT_ROUNDS = 5
"""Rounds on RT, ours and the floor back to back (after a warm-up of each over 5 tickets),
each over freshly opened tickets; the ratio is the median of the rounds' ratios."""
RT_CONCURRENCY = 4
"""The ``for_each`` concurrency of the route runner on RT (the example's is 8, for the
embedded helpdesk): measured here at 1, 2, 4 and 8, RT (two workers, its SQLite db taking
one write at a time) routed most at 2-4 tickets at a time and less again at 8; the RT example
in docs/ticket-automation.md routes 4 at a time too. Ours is also measured at 1."""
_RT_QUEUES = ("IT Support", "Billing", "Sales", "HR")


async def _seed(client: Any, tickets: int, seed: int) -> list[str]:
    """Open ``tickets`` sample tickets in Incoming, one ``POST /ticket`` each; their ids."""
    from open_ticket_ai.demo.sample_tickets import sample_tickets

    ids = []
    for sample in sample_tickets(tickets, seed=seed):
        answer = await client.post(
            "/ticket",
            json={"Queue": "Incoming", "Subject": sample.subject, "Content": sample.body,
                  "ContentType": "text/plain"},
        )  # fmt: skip
        answer.raise_for_status()
        ids.append(str(answer.json()["id"]))
    return ids


async def _floor(client: Any, ids: list[str]) -> dict[str, float]:
    """RT's floor for routing these tickets (all of Incoming): the calls a routed ticket
    cannot do without, made directly, each timed: one search for the page (``fields=Subject``,
    what a classifier needs at the least), then per ticket one comment (the note) and one
    ``PUT`` (queue, priority and status, as the route runner changes them)."""

    async def timed(method: str, path: str, **kwargs: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        answer = await client.request(method, path, **kwargs)
        elapsed = time.perf_counter() - started
        if answer.status_code >= 300:
            raise RuntimeError(f"floor: {method} {path} answered {answer.status_code}")
        return elapsed, answer.json()

    query = {"query": "Queue = 'Incoming'", "fields": "Subject", "per_page": len(ids)}
    search, page = await timed("GET", "/tickets", params=query)
    if sorted(str(item["id"]) for item in page["items"]) != sorted(ids):
        raise RuntimeError("floor: the search did not return the tickets just opened")
    notes, updates = [], []
    for index, ticket in enumerate(ids):
        note = {"Subject": "open-ticket-ai", "ContentType": "text/plain",
                "Content": "open-ticket-ai: queue Billing (93% sure), priority normal.\n\n"
                           "[otai:routing]"}  # fmt: skip
        notes.append((await timed("POST", f"/ticket/{ticket}/comment", json=note))[0])
        change = {"Queue": _RT_QUEUES[index % len(_RT_QUEUES)], "Priority": 50, "Status": "open"}
        updates.append((await timed("PUT", f"/ticket/{ticket}", json=change))[0])
    per_ticket = search / len(ids) + sum(notes) / len(ids) + sum(updates) / len(ids)
    return {
        "per_s": 1 / per_ticket,
        "search_ms": search * 1000,
        "note_ms": sum(notes) / len(ids) * 1000,
        "update_ms": sum(updates) / len(ids) * 1000,
        "calls_per_ticket": 1 / len(ids) + 2,
    }


async def _ours(
    directory: Path, helpdesk: dict[str, Any], tickets: int, concurrency: int = 1
) -> dict[str, float]:
    """The route runner over the ``tickets`` waiting in Incoming, with the REST calls its
    adapter made (each attempt, as TicketSystem.answered is told of them)."""
    from open_ticket_ai.tickets.adapters.rt import RequestTrackerTicketSystem

    made = 0
    told = RequestTrackerTicketSystem.answered

    def count(self: Any, method: str, status: int, duration: float) -> None:
        nonlocal made
        made += 1
        told(self, method, status, duration)

    RequestTrackerTicketSystem.answered = count  # type: ignore[method-assign]
    try:
        elapsed = await _route(_routing(directory, helpdesk, concurrency))
    finally:
        RequestTrackerTicketSystem.answered = told  # type: ignore[method-assign]
    return {"per_s": tickets / elapsed, "calls_per_ticket": made / tickets}


def request_tracker(directory: Path, tickets: int) -> dict[str, Any] | str:
    """Tickets/s on RT, ours and RT's floor in the same run (``RT_ROUNDS`` rounds
    alternated), or why it could not run (RT needs root and Debian's mirrors)."""
    import httpx

    state = directory / "rt"
    env = {**os.environ, "RT_STATE_DIR": str(state), "RT_PORT": str(_free_port()),
           "RT_QUEUES": ",".join(QUEUES)}  # fmt: skip
    started = subprocess.run(["bash", str(SCRIPT), "all"], env=env, capture_output=True,
                             text=True, timeout=600, check=False)  # fmt: skip
    if started.returncode != 0:
        return f"RT not started: {started.stderr.strip().splitlines()[-1:]}"
    try:
        url = f"http://127.0.0.1:{env['RT_PORT']}"
        token = (state / "token").read_text().strip()
        helpdesk = {"id": "helpdesk", "use": "RequestTrackerTicketSystem",
                    "params": {"url": url, "token": token}}  # fmt: skip

        async def rounds() -> dict[str, list[dict[str, float]]]:
            done: dict[str, list[dict[str, float]]] = {"ours": [], "ours_1": [], "floor": []}
            async with httpx.AsyncClient(
                base_url=f"{url}/REST/2.0", headers={"Authorization": f"token {token}"},
                timeout=60, trust_env=False,
            ) as client:  # fmt: skip

                async def ours(size: int, seed: int, concurrency: int) -> dict[str, float]:
                    await _seed(client, size, seed)
                    return await _ours(directory, helpdesk, size, concurrency)

                async def floor(size: int, seed: int) -> dict[str, float]:
                    return await _floor(client, await _seed(client, size, seed))

                runs = {
                    "ours": lambda seed: ours(tickets, seed, RT_CONCURRENCY),
                    "ours_1": lambda seed: ours(tickets, seed, 1),
                    "floor": lambda seed: floor(tickets, seed),
                }
                await ours(5, 1, RT_CONCURRENCY)  # warm-up, not counted: RT's workers
                await floor(5, 2)  # compile what they run
                names = list(runs)
                for round_ in range(RT_ROUNDS):
                    # Back to back, each contender first in turn: a drift of the server (its
                    # db grows) or of the machine's load falls on all of them.
                    order = names[round_ % 3 :] + names[: round_ % 3]
                    for index, name in enumerate(order):
                        done[name].append(await runs[name](10 + 3 * round_ + index))
            return done

        done = asyncio.run(rounds())
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, check=False)
    ours = max(done["ours"], key=lambda r: r["per_s"])
    floor = max(done["floor"], key=lambda r: r["per_s"])
    ratios = [o["per_s"] / f["per_s"] for o, f in zip(done["ours"], done["floor"], strict=True)]
    ones = [o["per_s"] / f["per_s"] for o, f in zip(done["ours_1"], done["floor"], strict=True)]
    return {
        "tickets": tickets,
        "concurrency": RT_CONCURRENCY,
        "ours_per_s": ours["per_s"],
        "ours_calls_per_ticket": ours["calls_per_ticket"],
        "ours_rounds": [r["per_s"] for r in done["ours"]],
        "ours_1_per_s": max(r["per_s"] for r in done["ours_1"]),
        "ours_1_rounds": [r["per_s"] for r in done["ours_1"]],
        "ratio_1": statistics.median(ones),
        "floor_per_s": floor["per_s"],
        "floor_calls_per_ticket": floor["calls_per_ticket"],
        "floor_rounds": [r["per_s"] for r in done["floor"]],
        "floor_ms": {k: floor[k] for k in ("search_ms", "note_ms", "update_ms")},
        "round_ratios": ratios,
        "ratio": statistics.median(ratios),
    }


def _latency(classifier: Any, texts: list[str]) -> float:
    classifier.predict(texts[:5])  # warm up
    started = time.perf_counter()
    for text in texts:
        classifier.predict([text])
    return (time.perf_counter() - started) / len(texts) * 1000


BATCH = 50


def _batch_latency(classifier: Any, texts: list[str]) -> float:
    """Milliseconds per ticket when the texts go to the model ``BATCH`` at a time (as a
    ``for_each`` with ``concurrency`` sends them, batched)."""
    classifier.predict(texts[:5])  # warm up
    started = time.perf_counter()
    for at in range(0, len(texts), BATCH):
        classifier.predict(texts[at : at + BATCH])
    return (time.perf_counter() - started) / len(texts) * 1000


def classification_latency(directory: Path) -> dict[str, float | str]:
    from open_ticket_ai.classification.service import load_classifier
    from open_ticket_ai.demo.sample_tickets import sample_tickets

    texts = [t.text for t in sample_tickets(200, seed=11)]
    sklearn = load_classifier(str(directory / "queue-model.otai"), "sklearn")
    out: dict[str, float | str] = {
        "sklearn_ms": _latency(sklearn, texts),
        "sklearn_batch_ms": min(_batch_latency(sklearn, texts) for _ in range(3)),
    }
    try:
        from bench.tiny_bert import save_tiny_bert
    except ImportError as exc:
        out["transformers_ms"] = f"not installed: {exc}"
        return out
    model_dir = save_tiny_bert(directory / "tiny-bert", texts)
    out["transformers_ms"] = _latency(load_classifier(str(model_dir), "transformers"), texts)
    return out


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        incoming = 200
        _demo(directory, incoming)
        result: dict[str, Any] = {
            "tickets": incoming,
            "embedded_per_s": embedded(directory, incoming),
        }
        result["rt"] = request_tracker(directory, 50)
        result.update(classification_latency(directory))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
