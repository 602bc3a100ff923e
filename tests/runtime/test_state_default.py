"""The state file is there by default, beside the config: a second instance of the same
config refuses to start, naming the first one's pid; ``state_path: false`` runs without one;
the lock file is never opened through a symlink."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from tests.support.virtual_clock import VirtualClockLoop

from open_ticket_ai import OpenTicketAIError, build, load_config, parse_config
from open_ticket_ai.runtime.events import ScheduleReset
from open_ticket_ai.runtime.orchestrator import Orchestrator
from open_ticket_ai.runtime.state import StateLockedError, state_file_of

CONFIG = """\
orchestrator:
  ledger: false
{extra}  runners:
    - id: hello
      on: [{{id: hourly, params: {{hours: 1}}}}]
      run: {{id: say, use: ExpressionPipe, params: {{expression: "hi"}}}}
"""


def write(directory: Path, extra: str = "") -> Path:
    path = directory / "config.yml"
    path.write_text(CONFIG.format(extra=extra))
    return path


def test_a_second_instance_of_a_config_refuses_naming_the_first(tmp_path: Path) -> None:
    config = write(tmp_path)
    first = Orchestrator(build(load_config(config)))
    try:
        assert first.state is not None
        assert first.state.path == tmp_path / "var" / "otai-state.sqlite"
        with pytest.raises(
            StateLockedError, match=rf"in use by another otai run \(pid {os.getpid()}\)"
        ):
            Orchestrator(build(load_config(config)))
    finally:
        first.close()
    Orchestrator(build(load_config(config))).close()  # free again once the first is gone


def test_state_path_false_runs_without_one_and_a_relative_one_is_beside_the_config(
    tmp_path: Path,
) -> None:
    off = write(tmp_path, "  state_path: false\n")
    orchestrator = Orchestrator(build(load_config(off)))
    assert orchestrator.state is None
    orchestrator.close()
    assert not (tmp_path / "var").exists()
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    named = write(elsewhere, "  state_path: data/state.sqlite\n")
    assert state_file_of(build(load_config(named))) == elsewhere / "data" / "state.sqlite"


def test_a_config_given_as_text_has_no_default_state_file() -> None:
    assert state_file_of(build(parse_config(CONFIG.format(extra=""), "nowhere.yml"))) is None


def test_state_path_true_is_a_config_error() -> None:
    with pytest.raises(OpenTicketAIError, match="state_path"):
        build(parse_config(CONFIG.format(extra="  state_path: true\n"), "t.yml"))


def test_the_lock_file_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    config = write(tmp_path)
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "otai-state.sqlite.lock").symlink_to(target)
    with pytest.raises(OpenTicketAIError, match="is a symbolic link"):
        Orchestrator(build(load_config(config)))
    assert target.read_text() == "keep me\n"


@pytest.mark.virtual_clock
async def test_a_stored_grid_in_the_future_is_replaced_and_said(
    tmp_path: Path, virtual_clock: VirtualClockLoop
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(extra="").replace("{hours: 1}", "{seconds: 2}"))
    ahead = 3600.0
    first = Orchestrator(
        build(load_config(config)), wall_clock=lambda: virtual_clock.wall() + ahead, log=False
    )
    main = asyncio.create_task(first.run())
    await asyncio.sleep(0.1)
    first.request_stop()
    assert await main == 0  # its grid starts an hour ahead of the clock below
    resets: list[ScheduleReset] = []
    second = Orchestrator(build(load_config(config)), wall_clock=virtual_clock.wall, log=False)
    second.bus.subscribe(resets.append, ScheduleReset)
    main = asyncio.create_task(second.run())
    await asyncio.sleep(7.0)
    second.request_stop()
    assert await main == 0
    assert [r.trigger for r in resets] == ["hourly"]
    assert resets[0].ahead == pytest.approx(ahead, abs=1.0)
    assert second.runners["hello"].stats.runs == 3  # at 2, 4 and 6 s: not silent
