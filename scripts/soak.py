"""``make soak``: the robustness campaign, as a table of which promise held.

Runs the fault-injection, clock, shutdown, listener, secrets and resource-limit cases of the
test suite (real subprocesses, a live Request Tracker behind a fault-injecting proxy, loopback
fakes of Znuny and Zammad), each group in its own pytest run, ``--rounds`` times, and prints
one row per group: cases, held, broke, skipped, time. Exits 1 when any case broke.

    python scripts/soak.py [--rounds N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Group:
    promise: str
    args: tuple[str, ...]


GROUPS = (
    Group(
        "never twice: a lost answer (500, closed, cut, timeout) x RT, Znuny, Zammad",
        ("tests/tickets/test_lost_answers.py",),
    ),
    Group(
        "never twice: no blind retry of writes; Retry-After; per-call deadline",
        ("tests/tickets/test_helpdesk_client.py",),
    ),
    Group(
        "never twice: one instance per state file (lock without symlinks); restored grids",
        ("tests/runtime/test_state_default.py", "tests/runtime/test_state_restart.py"),
    ),
    Group(
        "nothing silent: clock steps, missed fires, run deadline",
        ("tests/runtime/test_timing_rules.py", "-k", "step or deadline or missed"),
    ),
    Group(
        "nothing silent: cron syntax, interval bounds, jitter",
        (
            "tests/base/triggers/test_cron_trigger.py",
            "tests/base/triggers/test_interval_trigger.py",
            "tests/core/triggers/test_timing.py",
        ),
    ),
    Group(
        "never hung: signals while running, opening, closing, blocked",
        ("tests/runtime/test_shutdown.py",),
    ),
    Group(
        "listener: malformed HTTP, slowloris, connection cap, out of descriptors, replay",
        (
            "tests/http/test_server.py",
            "tests/base/triggers/test_webhook_trigger.py",
            "-k",
            "not metrics",
        ),
    ),
    Group("secrets: never in logs, errors, validation, --once", ("tests/test_secrets.py",)),
    Group(
        "resource limits: templates, log-line forgery",
        (
            "tests/core/test_templates.py",
            "tests/runtime/test_events.py",
            "-k",
            "unbounded or bounded or forge",
        ),
    ),
)


@dataclass
class Tally:
    cases: int = 0
    held: int = 0
    broke: list[str] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0


def run(group: Group, report: Path) -> Tally:
    started = time.monotonic()
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    subprocess.run(
        [*pytest, "--junitxml", str(report), *group.args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    tally = Tally(seconds=time.monotonic() - started)
    if not report.exists():
        tally.broke.append("pytest did not run")
        return tally
    for case in ET.parse(report).getroot().iter("testcase"):
        tally.cases += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            tally.broke.append(name)
        elif case.find("skipped") is not None:
            tally.skipped += 1
        else:
            tally.held += 1
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="run every group this often")
    rounds = parser.parse_args().rounds
    console = Console(width=max(Console().width, 110))
    table = Table(title=f"soak: {rounds} round(s)")
    for column in ("promise", "cases", "held", "broke", "skipped", "time"):
        table.add_column(column, justify="left" if column == "promise" else "right")
    broken: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, group in enumerate(GROUPS):
            total = Tally()
            for round_ in range(rounds):
                tally = run(group, Path(tmp) / f"{index}-{round_}.xml")
                total.cases += tally.cases
                total.held += tally.held
                total.skipped += tally.skipped
                total.broke += tally.broke
                total.seconds += tally.seconds
            console.print(f"{group.promise}: {total.held}/{total.cases} held")
            broken += total.broke
            table.add_row(
                group.promise,
                str(total.cases),
                str(total.held),
                str(len(total.broke)),
                str(total.skipped),
                f"{total.seconds:.0f}s",
            )
    console.print(table)
    for name in broken:
        console.print(f"[red]broke:[/red] {name}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
