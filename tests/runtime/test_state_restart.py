"""Persistence across restarts and the single-instance lock, with ``otai run`` as a real
process. Bounds are generous: a grid point is judged to a few tenths of a second."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from tests.support.otai_process import OtaiProcess, write_config

from open_ticket_ai.runtime.state import StateLockedError, StateStore

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, *, interval: float, deadline: str | None = None) -> Path:
    extra = f"\n              starting_deadline: {deadline}" if deadline else ""
    return write_config(
        tmp_path,
        f"""
        orchestrator:
          state_path: {tmp_path / "state.sqlite"}
          runners:
            - id: tick
              on: [{{id: every, params: {{seconds: {interval}}}}}]
              run: {{id: p, use: ExpressionPipe, params: {{expression: 1}}}}{extra}
        """,
    )


def otai(path: Path) -> OtaiProcess:
    return OtaiProcess("run", str(path), "--log-format", "json", pythonpath=ROOT)


def stop(process: OtaiProcess) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0


def test_a_quick_restart_keeps_the_grid_and_never_fires_twice(tmp_path: Path) -> None:
    path = config(tmp_path, interval=2.0)
    with otai(path) as first:
        ready = first.wait_for_event("orchestrator.ready")["_at"]
        fired = first.wait_for_event("run.started", timeout=10)["_at"]
        assert 1.5 < fired - ready < 2.8
        stop(first)
    with otai(path) as second:
        again = second.wait_for_event("orchestrator.ready")["_at"]
        started = second.wait_for_event("run.started", timeout=10)["_at"]
        stop(second)
    assert not second.find("run.catch_up")
    assert not second.find("run.missed")
    # The second process's first fire lies on the first one's grid: fired + 2k.
    k = round((started - fired) / 2.0)
    assert k >= 1
    assert abs(started - (fired + 2.0 * k)) < 0.5  # not at start, unless start is on the grid
    assert started > again


def test_downtime_runs_one_catch_up_within_the_starting_deadline(tmp_path: Path) -> None:
    path = config(tmp_path, interval=0.5, deadline="1h")
    with otai(path) as first:
        first.wait_for_event("run.finished")
        stop(first)
    time.sleep(2.5)  # about five fires pass while nothing runs
    with otai(path) as second:
        caught = second.wait_for_event("run.catch_up")
        missed = second.wait_for_event("run.missed")
        second.wait_for_event("run.finished")
        time.sleep(0.2)
        stop(second)
    assert caught["runner"] == "tick"
    assert missed["reason"] == "downtime"
    assert missed["count"] >= 3
    assert len(second.find("run.catch_up")) == 1
    # One catch-up, no storm: within 0.4 s (less than an interval) of it at most one more
    # run starts, the next grid point's, where a storm would start one per missed point.
    early = [e for e in second.find("run.started") if e["_at"] - caught["_at"] < 0.4]
    assert len(early) <= 2


def test_without_a_starting_deadline_downtime_is_counted_not_caught_up(tmp_path: Path) -> None:
    path = config(tmp_path, interval=0.5)
    with otai(path) as first:
        first.wait_for_event("run.finished")
        stop(first)
    time.sleep(1.5)
    with otai(path) as second:
        missed = second.wait_for_event("run.missed")
        second.wait_for_event("orchestrator.ready")
        stop(second)
    assert not second.find("run.catch_up")
    assert missed["reason"] == "downtime"
    summary = second.wait_for_event("runner.summary")
    assert summary["missed"] >= missed["count"] >= 2


def test_a_second_instance_on_the_same_state_file_refuses_to_start(tmp_path: Path) -> None:
    path = config(tmp_path, interval=60)
    with otai(path) as first:
        first.wait_for_event("orchestrator.ready")
        with otai(path) as second:
            assert second.wait(15) == 2
        assert "state.sqlite is in use by another otai run" in second.stderr_text
        assert f"pid {first.proc.pid}" in second.stderr_text
        first.proc.kill()  # a crash: the OS drops the lock
        first.wait(15)
    with otai(path) as third:
        third.wait_for_event("orchestrator.ready")
        stop(third)


def test_the_lock_is_per_file_and_released_on_close(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    with pytest.raises(StateLockedError, match="in use"):
        StateStore(tmp_path / "s.sqlite")
    store.note_fire("r", "t", 123.5)
    store.note_outcome("r", "t", "succeeded", 124.0)
    store.set_anchor("t", "sig", 100.0)
    store.close()
    again = StateStore(tmp_path / "s.sqlite")
    try:
        record = again.last_fire("r", "t")
        assert record is not None
        assert (record.fired_at, record.outcome) == (123.5, "succeeded")
        assert again.anchor("t", "sig") == 100.0
        assert again.anchor("t", "other settings") is None
    finally:
        again.close()
