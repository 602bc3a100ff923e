"""The ledger in the runtime: every run recorded with its steps, actions and decisions (also
those a plugin pipe reports), ids that go on across restarts, and a ledger that cannot be
written never stopping a run."""

from __future__ import annotations

import logging
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from open_ticket_ai import ComponentError, build, load_config, parse_config
from open_ticket_ai.core.pipes.records import ActionKind
from open_ticket_ai.runtime.events import RunOutcome
from open_ticket_ai.runtime.ledger import SqliteLedgerStore
from open_ticket_ai.runtime.ledger_process import ProcessLedger, ProcessLedgerStore
from open_ticket_ai.runtime.orchestrator import Orchestrator

PLUGIN = '''
from open_ticket_ai import Action, Decision, ParamsModel, Pipe, PipeContext, PipeResult


class TouchParams(ParamsModel):
    ticket: str


class TouchPipe(Pipe[TouchParams]):
    """Changes a (pretend) ticket, and says so."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        change = Action.ticket_updated(self.params.ticket, "desk", {"queue": ("A", "B")})
        ctx.record_action(change)
        if ctx.dry_run:
            return PipeResult.success({"value": "would"})
        ctx.record_decision(
            Decision(model="m", label="B", confidence=0.75, top=[("B", 0.75), ("A", 0.25)],
                     ticket_id=self.params.ticket, used="B")
        )
        return PipeResult.success({"value": "done"})
'''

CONFIG = """
open_ticket_ai:
  orchestrator:
    runners:
      - id: touch
        run:
          id: steps
          steps:
            - id: each
              for_each: ["1", "2", "3"]
              use: "ledgerplugin:TouchPipe"
              params: {ticket: "{{ item }}"}
            - id: after
              use: ExpressionPipe
              params: {expression: "{{ pipe_result('each', 'count') }}"}
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "ledgerplugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ledgerplugin", None)
    yield
    sys.modules.pop("ledgerplugin", None)


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "site" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def ledger_of(config: Path) -> SqliteLedgerStore:
    return SqliteLedgerStore(config.parent / "var" / "otai-ledger.sqlite", readonly=True)


async def test_a_run_is_recorded_with_its_steps_actions_and_decisions(
    tmp_path: Path, plugin: None
) -> None:
    config = write(tmp_path)
    orchestrator = Orchestrator(build(load_config(config)))
    assert await orchestrator.run() == 0
    store = ledger_of(config)
    (run,) = store.runs()
    store.close()
    assert run.run_id == "touch-1"
    assert run.outcome is RunOutcome.SUCCEEDED
    assert run.trigger is None
    assert not run.dry_run
    steps = {step.step_id: step for step in run.steps}
    assert set(steps) == {"each", "after", "steps"}
    assert [s.value for s in steps["each"].items] == ["succeeded"] * 3
    assert steps["each"].path.endswith("orchestrator.runners[0].run.steps[0]")
    assert [a.ticket_id for a in run.actions] == ["1", "2", "3"]
    assert {a.kind for a in run.actions} == {ActionKind.TICKET_UPDATED}
    assert run.actions[0].changes == {"queue": ("A", "B")}
    assert run.actions[0].step == steps["each"].path
    assert [d.ticket_id for d in run.decisions] == ["1", "2", "3"]
    assert run.decisions[0].top == (("B", 0.75), ("A", 0.25))


async def test_run_ids_go_on_from_the_ledger_across_restarts(tmp_path: Path, plugin: None) -> None:
    config = write(tmp_path)
    for _ in range(2):
        assert await Orchestrator(build(load_config(config))).run() == 0
    restarted = Orchestrator(build(load_config(config)))
    result = await restarted.run_once("touch")
    assert result.succeeded
    assert restarted.runners["touch"].run_id == "touch-3"
    store = ledger_of(config)
    assert [r.run_id for r in store.runs()] == ["touch-3", "touch-2", "touch-1"]
    store.close()


async def test_a_dry_run_is_marked_in_the_ledger(tmp_path: Path, plugin: None) -> None:
    config = write(tmp_path)
    assert await Orchestrator(build(load_config(config)), dry_run=True).run() == 0
    store = ledger_of(config)
    (run,) = store.runs()
    store.close()
    assert run.dry_run
    assert all(action.dry_run for action in run.actions)
    assert run.decisions == ()


async def test_ledger_false_records_nothing(tmp_path: Path, plugin: None) -> None:
    text = CONFIG.replace("  orchestrator:\n", "  orchestrator:\n    ledger: false\n")
    config = write(tmp_path, text)
    orchestrator = Orchestrator(build(load_config(config)))
    assert orchestrator.ledger is None
    assert await orchestrator.run() == 0
    assert not (config.parent / "var" / "otai-ledger.sqlite").exists()


def test_a_config_given_as_text_has_no_default_ledger(plugin: None) -> None:
    assert Orchestrator(build(parse_config(CONFIG, "nowhere.yml"))).ledger is None


async def test_a_configured_relative_path_is_relative_to_the_config(
    tmp_path: Path, plugin: None
) -> None:
    text = CONFIG.replace(
        "  orchestrator:\n",
        "  orchestrator:\n    ledger: {path: data/runs.sqlite, retention: 7d}\n",
    )
    config = write(tmp_path, text)
    orchestrator = Orchestrator(build(load_config(config)))
    assert orchestrator.ledger is not None
    assert orchestrator.ledger.retention == 7 * 86400
    assert await orchestrator.run() == 0
    assert (config.parent / "data" / "runs.sqlite").is_file()


def test_a_file_that_is_not_a_ledger_is_a_clear_error(tmp_path: Path, plugin: None) -> None:
    config = write(
        tmp_path,
        CONFIG.replace("  orchestrator:\n", "  orchestrator:\n    ledger: {path: notes.txt}\n"),
    )
    (config.parent / "notes.txt").write_text("my notes, not a database\n" * 100)
    with pytest.raises(ComponentError, match=r"notes\.txt.*not a run ledger.*ledger: false"):
        Orchestrator(build(load_config(config)))


async def test_a_ledger_that_cannot_be_written_never_stops_a_run(
    tmp_path: Path, plugin: None, caplog: pytest.LogCaptureFixture
) -> None:
    config = write(tmp_path)
    orchestrator = Orchestrator(build(load_config(config)))
    ledger = orchestrator.ledger
    assert isinstance(ledger, ProcessLedger)
    path = ledger.store.path
    ledger.store.close()
    ledger.store = ProcessLedgerStore(path, timeout=0.1)  # a lock fails the write at once
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
    try:
        with caplog.at_level(logging.ERROR, logger="open_ticket_ai"):
            result = await orchestrator.run_once("touch")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.succeeded
    assert ledger.failures >= 1
    failed = [r for r in caplog.records if getattr(r, "event", None) == "ledger.failed"]
    assert len(failed) == 1  # once a minute at most
    assert "database is locked" in failed[0].getMessage()
    assert "runs go on" in failed[0].getMessage()
