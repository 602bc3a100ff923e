"""What a run did, where people look: the summary line, ``otai run --once`` and ``--dry-run``,
``otai runs`` and ``otai status``, each as a subprocess against the embedded helpdesk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests.support.otai_process import OtaiProcess

ROOT = Path(__file__).resolve().parents[2]
ROUTING = ROOT / "examples" / "ticket-routing.yml"
INCOMING = 12


def otai(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.pop("OTAI_CONFIG", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "open_ticket_ai", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=full,
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`otai demo setup`: a helpdesk with tickets waiting in Incoming, and two models."""
    directory = tmp_path_factory.mktemp("demo-ledger")
    done = otai(
        "demo",
        "setup",
        "--dir",
        str(directory / "demo"),
        "--tickets",
        "200",
        "--incoming",
        str(INCOMING),
        cwd=directory,
    )
    assert done.returncode == 0, done.stderr
    return directory / "demo"


@pytest.fixture
def site(prepared: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo and of the main job's config, in a directory of its own."""
    shutil.copytree(prepared, tmp_path / "demo")
    (tmp_path / "config.yml").write_text(ROUTING.read_text())
    return tmp_path


def demo_env(site: Path) -> dict[str, str]:
    return {"OTAI_DEMO_DIR": str(site / "demo")}


def helpdesk_content(site: Path) -> list[str]:
    """Every row of the embedded helpdesk, as SQL text."""
    with sqlite3.connect(site / "demo" / "helpdesk.sqlite") as db:
        return list(db.iterdump())


def test_once_prints_each_step_and_the_summary_and_records_the_run(site: Path) -> None:
    done = otai("run", "--once", "route", "config.yml", cwd=site, env=demo_env(site))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "run route-1 of runner 'route'" in out
    assert "succeeded" in out
    assert "fetch: [{" in out  # the fetched tickets, shortened
    assert f"each_ticket: items: {INCOMING} succeeded" in out
    assert out.count("action: add note ticket") == INCOMING
    assert out.count("decision: ticket") == 2 * INCOMING
    finished = [line for line in done.stderr.splitlines() if "run.finished" in line]
    assert len(finished) == 1
    assert f": {INCOMING} tickets; queue " in finished[0]
    assert f"; {INCOMING} notes" in finished[0]
    assert (site / "var" / "otai-ledger.sqlite").is_file()

    listed = otai("runs", "list", "--config", "config.yml", "--json", cwd=site)
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["run_id"] == "route-1"
    assert run["outcome"] == "succeeded"

    shown = otai("runs", "show", "route-1", "--config", "config.yml", "--json", cwd=site)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    kinds = [a["kind"] for a in record["actions"]]
    assert kinds.count("note_added") == INCOMING
    assert kinds.count("ticket_updated") == INCOMING
    assert len(record["decisions"]) == 2 * INCOMING
    assert {s["step_id"] for s in record["steps"]} >= {"fetch", "each_ticket", "routing"}
    (each,) = [s for s in record["steps"] if s["step_id"] == "each_ticket"]
    assert each["items"] == ["succeeded"] * INCOMING

    ticket = next(a["ticket_id"] for a in record["actions"] if a["kind"] == "ticket_updated")
    history = otai("runs", "tickets", ticket, "--config", "config.yml", "--json", cwd=site)
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    assert len(entries) == 4  # a note, an update, two decisions
    assert {e["run_id"] for e in entries} == {"route-1"}

    again = otai("run", "--once", "route", "config.yml", cwd=site, env=demo_env(site))
    assert again.returncode == 0, again.stderr
    # Run ids go on from the ledger: a restarted service never reuses one.
    assert "run route-2 of runner 'route'" in again.stdout
    # Nothing waits in Incoming any more: the run did nothing outside, the plain line stays.
    (line,) = [line for line in again.stderr.splitlines() if "run.finished" in line]
    assert line.rstrip().endswith("ms")


def test_a_dry_run_changes_no_ticket_and_is_marked(site: Path) -> None:
    before = helpdesk_content(site)
    done = otai("run", "--once", "route", "--dry-run", "config.yml", cwd=site, env=demo_env(site))
    assert done.returncode == 0, done.stderr
    assert helpdesk_content(site) == before
    assert "(dry run)" in done.stdout
    assert done.stdout.count("action: would add note") == INCOMING
    assert done.stdout.count("action: would update ticket") == INCOMING
    (line,) = [line for line in done.stderr.splitlines() if "run.finished" in line]
    assert f"(dry run): {INCOMING} tickets" in line

    shown = otai("runs", "show", "route-1", "--config", "config.yml", "--json", cwd=site)
    record = json.loads(shown.stdout)
    assert record["dry_run"] is True
    assert all(action["dry_run"] for action in record["actions"])

    feed = otai("run", "--once", "feed", "--dry-run", "config.yml", cwd=site, env=demo_env(site))
    assert feed.returncode == 0, feed.stderr
    assert "action: would create ticket" in feed.stdout
    assert helpdesk_content(site) == before


FAILING = """
orchestrator:
  runners:
    - id: broken
      run:
        id: steps
        steps:
          - id: first
            use: ExpressionPipe
            params: {expression: "{{ 40 + 2 }}"}
          - id: second
            use: ExpressionPipe
            params: {expression: "{{ fail('the helpdesk said no') }}"}
"""


def test_once_exits_1_when_the_run_fails_and_names_the_failed_step(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(FAILING)
    done = otai("run", "--once", "broken", "config.yml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "succeeded" in done.stdout
    assert "first: 42" in done.stdout
    assert "failed" in done.stdout
    assert "second:" in done.stdout
    assert "the helpdesk said no" in done.stdout
    listed = otai("runs", "list", "--config", "config.yml", "--json", cwd=tmp_path)
    (run,) = json.loads(listed.stdout)
    assert run["outcome"] == "failed"
    assert "the helpdesk said no" in run["error"]


def test_once_of_an_unknown_runner_names_the_runners(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(FAILING)
    done = otai("run", "--once", "nope", "config.yml", cwd=tmp_path)
    assert done.returncode == 2  # bad usage
    assert "no runner 'nope' (runners: broken)" in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_status_from_a_running_instance_then_from_its_files(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "config.yml").write_text(
        textwrap.dedent(
            f"""
            orchestrator:
              http: {{port: {port}}}
              state_path: var/state.sqlite
              runners:
                - id: tick
                  on: [{{id: every, params: {{seconds: 1}}}}]
                  run: {{id: x, use: ExpressionPipe, params: {{expression: "{{{{ 1 }}}}"}}}}
                - id: idle
                  on: [{{id: hourly, params: {{hours: 1}}}}]
                  run: {{id: y, use: ExpressionPipe, params: {{expression: "{{{{ 2 }}}}"}}}}
            """
        )
    )
    with OtaiProcess("run", "config.yml", "--log-format", "json", cwd=tmp_path) as instance:
        instance.wait_for_event("run.finished", runner="tick", timeout=15)
        live = otai("status", "config.yml", "--json", cwd=tmp_path)
        assert live.returncode == 0, live.stderr
        body: dict[str, Any] = json.loads(live.stdout)
        assert any("running (pid" in line for line in body["sources"])
        rows = {row["runner"]: row for row in body["runners"]}
        assert rows["tick"]["state"] in ("idle",) or rows["tick"]["state"].startswith("running")
        assert rows["tick"]["last_status"] == "succeeded"
        assert rows["tick"]["next_fire"] is not None
        assert rows["idle"]["last_status"] is None
        assert rows["idle"]["next_fire"] is not None
        table = otai("status", "config.yml", cwd=tmp_path)
        assert "tick" in table.stdout
        assert "every (IntervalTrigger)" in table.stdout
        instance.send_signal(signal.SIGINT)
        assert instance.wait(20) == 0
    after = otai("status", "config.yml", "--json", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    body = json.loads(after.stdout)
    assert any("not running" in line for line in body["sources"])
    rows = {row["runner"]: row for row in body["runners"]}
    assert rows["tick"]["last_status"] == "succeeded"
    assert rows["tick"]["last_24h"]["succeeded"] >= 1
    assert rows["tick"]["next_fire"] is None


def test_status_of_a_broken_config_is_a_config_error(tmp_path: Path) -> None:
    broken = "orchestrator: {runners: [{id: a, run: {id: p, use: Nope}}]}"
    (tmp_path / "config.yml").write_text(broken)
    done = otai("status", "config.yml", cwd=tmp_path)
    assert done.returncode == 2
    assert "Nope" in done.stderr
