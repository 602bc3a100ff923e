"""The main job, examples/ticket-routing.yml: on the embedded helpdesk as `make run` sets it
up, and the same config with the helpdesk service switched to a real Request Tracker 5."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.fault_proxy import FaultProxy
from tests.tickets.rt_server import SETUP_SECONDS, RtServer, running_rt_server

from open_ticket_ai import build, parse_config
from open_ticket_ai.core.config.yaml_source import load_yaml
from open_ticket_ai.demo.sample_tickets import sample_tickets
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.tickets.adapters.rt import RequestTrackerParams, RequestTrackerTicketSystem
from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem
from open_ticket_ai.tickets.models import TicketSearch
from open_ticket_ai.tickets.system import TicketSystem

ROOT = Path(__file__).resolve().parents[2]
ROUTING = ROOT / "examples" / "ticket-routing.yml"
QUEUES = ("Incoming", "IT Support", "Billing", "Sales", "HR", "Review")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`otai demo setup`, as `make run` runs it: a helpdesk and two trained models."""
    directory = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "open_ticket_ai",
            "demo",
            "setup",
            "--dir",
            str(directory),
            "--tickets",
            "200",
            "--incoming",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return directory


def routing_config(demo_dir: Path, helpdesk: dict[str, Any] | None = None) -> str:
    """examples/ticket-routing.yml with the demo's paths, and optionally another helpdesk."""
    text = ROUTING.read_text().replace(
        "{{ env.OTAI_DEMO_DIR | default('var/demo') }}", str(demo_dir)
    )
    document, _ = load_yaml(text, ROUTING.name)  # keeps `on:` a key (PyYAML would say True)
    if helpdesk is not None:
        services = document["open_ticket_ai"]["services"]
        services[:] = [helpdesk if s["id"] == "helpdesk" else s for s in services]
    return yaml.safe_dump(document, sort_keys=False)


async def route_once(text: str) -> Any:
    return await Orchestrator(build(parse_config(text, "ticket-routing.yml"))).run_once("route")


async def everything(system: TicketSystem[Any]) -> dict[str, tuple[str | None, list[str]]]:
    found = {}
    for queue in QUEUES:
        for ticket in await system.search(TicketSearch(queue=queue, limit=1000)):
            found[ticket.id] = (ticket.queue, [n.body for n in await system.notes(ticket.id)])
    return found


def routing_notes(notes: list[str]) -> list[str]:
    return [n for n in notes if "open-ticket-ai: queue" in n and "[otai:routing]" in n]


async def test_routing_on_the_embedded_helpdesk(demo_dir: Path) -> None:
    system = SqliteTicketSystem(SqliteParams(path=str(demo_dir / "helpdesk.sqlite")))
    await system.open()
    try:
        waiting = await system.search(TicketSearch(queue="Incoming", limit=1000))
        assert len(waiting) == 12
        expected = {t.id: t.custom_fields["expected_queue"] for t in waiting}

        result = await route_once(routing_config(demo_dir))
        assert result.succeeded, result.message
        state = await everything(system)
        assert not await system.search(TicketSearch(queue="Incoming"))
        right = sum(state[i][0] == queue for i, queue in expected.items())
        assert right >= 8, f"only {right} of 12 routed as a human would"
        for ticket_id in expected:
            assert len(routing_notes(state[ticket_id][1])) == 1

        # A run over the same tickets again (say, a retry) adds and changes nothing.
        again = routing_config(demo_dir).replace("queue: Incoming", "queue: Billing")
        assert (await route_once(again)).succeeded
        after = await everything(system)
        for ticket_id in expected:
            assert len(routing_notes(after[ticket_id][1])) == 1
            assert after[ticket_id][0] == state[ticket_id][0]
    finally:
        await system.close()


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtServer]:
    with running_rt_server(tmp_path_factory.mktemp("rt-routing"), queues=QUEUES) as server:
        yield server


PER_ROUTED_TICKET = Counter(
    {
        "POST /transactions": 1,  # AddNotePipe: the notes, for its marker
        "POST /ticket/:id/comment": 1,  # the note
        "GET /tickets": 2,  # UpdateTicketPipe: the ticket; after the change, as it is now
        "PUT /ticket/:id": 1,  # the change
    }
)
"""REST calls the route runner makes per ticket on RT, beside one search per 50 tickets
(the page, its tickets' Create transactions and their texts). Before: 12 (docs/ticket-
automation.md has the table)."""
PER_PAGE = Counter({"GET /tickets": 1, "POST /transactions": 1, "POST /attachments": 1})


def rest_calls(proxy: FaultProxy) -> Counter[str]:
    """The proxy's hits as ``METHOD /path``, ticket ids as ``:id``, without the query."""
    return Counter(
        f"{h.method} "
        + re.sub(r"^/ticket/\d+", "/ticket/:id", h.target.split("?")[0].removeprefix("/REST/2.0"))
        for h in proxy.hits
    )


@pytest.mark.timeout(SETUP_SECONDS + 120)
async def test_the_same_routing_runs_against_request_tracker(
    demo_dir: Path, rt: RtServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    system = RequestTrackerTicketSystem(RequestTrackerParams(url=rt.url, token=rt.token))
    await system.open()
    try:
        samples = sample_tickets(10, seed=99)
        created = {}
        for sample in samples:
            new = sample.as_new_ticket().model_copy(update={"queue": "Incoming", "priority": None})
            created[(await system.create(new)).id] = sample.queue
        with FaultProxy(rt.url) as counting:
            helpdesk = {
                "id": "helpdesk",
                "use": "RequestTrackerTicketSystem",
                "params": {"url": counting.url, "token": rt.token, "time_zone": rt.time_zone},
            }
            result = await route_once(routing_config(demo_dir, helpdesk))
            assert result.succeeded, result.message
            per_ticket = Counter({call: n * len(created) for call, n in PER_ROUTED_TICKET.items()})
            assert rest_calls(counting) == PER_PAGE + per_ticket
            state = await everything(system)
            assert not await system.search(TicketSearch(queue="Incoming"))
            right = sum(state[i][0] == queue for i, queue in created.items())
            assert right >= 6, f"only {right} of 10 routed as a human would"
            for ticket_id in created:
                assert len(routing_notes(state[ticket_id][1])) == 1
            counting.reset()
            assert (await route_once(routing_config(demo_dir, helpdesk))).succeeded
            assert rest_calls(counting) == Counter({"GET /tickets": 1})  # nothing waiting
        for ticket_id, (_, notes) in (await everything(system)).items():
            if ticket_id in created:
                assert len(routing_notes(notes)) == 1
    finally:
        await system.close()
