"""Ticket automation: tickets per second through fetch, classify, update and note (the `route`
runner of examples/ticket-routing.yml), on the embedded helpdesk and on a real Request Tracker
5; and classification latency per ticket for each backend. Prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
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


def _routing(directory: Path, helpdesk: dict[str, Any] | None = None) -> str:
    import yaml

    from open_ticket_ai.core.config.yaml_source import load_yaml

    text = (ROOT / "examples" / "ticket-routing.yml").read_text()
    text = text.replace("{{ env.OTAI_DEMO_DIR | default('var/demo') }}", str(directory))
    document, _ = load_yaml(text, "ticket-routing.yml")
    if helpdesk is not None:
        services = document["open_ticket_ai"]["services"]
        services[:] = [helpdesk if s["id"] == "helpdesk" else s for s in services]
    return str(yaml.safe_dump(document, sort_keys=False))


async def _route(text: str) -> float:
    from open_ticket_ai import build, parse_config
    from open_ticket_ai.runtime.orchestrator import Orchestrator

    orchestrator = Orchestrator(build(parse_config(text, "ticket-routing.yml")))
    started = time.perf_counter()
    result = await orchestrator.run_once("route")
    elapsed = time.perf_counter() - started
    if not result.succeeded:
        raise RuntimeError(result.message)
    return elapsed


def embedded(directory: Path, tickets: int) -> float:
    return tickets / asyncio.run(_route(_routing(directory)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_tracker(directory: Path, tickets: int) -> float | str:
    """Tickets/s on RT, or why it could not run (RT needs root and Debian's mirrors)."""
    from open_ticket_ai.demo.sample_tickets import sample_tickets
    from open_ticket_ai.tickets.adapters.rt import RequestTrackerParams, RequestTrackerTicketSystem

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

        async def seed_and_route() -> float:
            system = RequestTrackerTicketSystem(RequestTrackerParams(url=url, token=token))
            await system.open()
            try:
                for sample in sample_tickets(tickets, seed=5):
                    new = sample.as_new_ticket().model_copy(
                        update={"queue": "Incoming", "priority": None}
                    )
                    await system.create(new)
            finally:
                await system.close()
            helpdesk = {"id": "helpdesk", "use": "RequestTrackerTicketSystem",
                        "params": {"url": url, "token": token}}  # fmt: skip
            return await _route(_routing(directory, helpdesk))

        return tickets / asyncio.run(seed_and_route())
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, check=False)


def _latency(classifier: Any, texts: list[str]) -> float:
    classifier.predict(texts[:5])  # warm up
    started = time.perf_counter()
    for text in texts:
        classifier.predict([text])
    return (time.perf_counter() - started) / len(texts) * 1000


def classification_latency(directory: Path) -> dict[str, float | str]:
    from open_ticket_ai.classification.service import load_classifier
    from open_ticket_ai.demo.sample_tickets import sample_tickets

    texts = [t.text for t in sample_tickets(200, seed=11)]
    out: dict[str, float | str] = {
        "sklearn_ms": _latency(
            load_classifier(str(directory / "queue-model.otai"), "sklearn"), texts
        )
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
        result["rt_per_s"] = request_tracker(directory, 50)
        result.update(classification_latency(directory))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
