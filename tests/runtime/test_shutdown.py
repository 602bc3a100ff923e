"""Stopping ``otai run`` with signals: drain, forced cancel after the deadline, second signal.

Each test holds a run in progress with a slow reply from the test server, then signals the
real subprocess. Bounds are generous: a cancelled run must end well before its reply would.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.http_server import HttpServer, Reply
from tests.support.otai_process import OtaiProcess

JSON = ("--log-format", "json")
SLOW_REPLY = 10.0
"""A reply held this long is never waited for when cancellation works."""


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer() as srv:
        yield srv


def write(tmp_path: Path, url: str, **orchestrator: Any) -> Path:
    path = tmp_path / "config.yml"
    runner = {
        "id": "slow",
        "on": [{"id": "tick", "params": {"milliseconds": 200}}],
        "run": {"id": "request", "use": "HttpRequestPipe", "params": {"url": url}},
    }
    document = {"orchestrator": {**orchestrator, "runners": [runner]}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def exit_within(otai: OtaiProcess, since: float, seconds: float = SLOW_REPLY / 2) -> int:
    """The exit code, asserting the process exited within ``seconds`` of ``since`` (a
    generous bound: far below the slow reply a broken shutdown would wait for)."""
    code = otai.wait(max(0.0, since + seconds - time.monotonic()))
    assert time.monotonic() - since < seconds
    return code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_lets_the_running_execution_finish(
    tmp_path: Path, server: HttpServer, sig: signal.Signals
) -> None:
    server.respond("/slow", Reply(200, text="done", delay=1.0))
    config = write(tmp_path, f"{server.url}/slow")

    with OtaiProcess("run", str(config), *JSON) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        otai.wait_for_event("run.started", runner="slow", timeout=10)
        server.wait_for_hits(1, "/slow", timeout=10)
        sent = otai.send_signal(sig)
        code = otai.wait(20)

    assert code == 0, otai.log_text()
    [stopping] = otai.find("orchestrator.stopping")
    assert stopping["running"] == 1
    [finished] = otai.find("run.finished", runner="slow")
    assert finished["status"] == "succeeded"
    assert finished["_at"] >= sent  # it finished after the signal: drained, not abandoned
    assert finished["duration_ms"] >= 900
    assert not otai.find("run.cancelled")
    assert otai.find("orchestrator.stopped")
    [summary] = otai.find("runner.summary", runner="slow")
    assert (summary["runs"], summary["failures"], summary["cancelled"]) == (1, 0, 0)
    assert len(server.hits("/slow")) == 1  # nothing fired after the signal


def test_run_past_the_shutdown_timeout_is_cancelled(tmp_path: Path, server: HttpServer) -> None:
    server.respond("/slow", Reply(200, text="late", delay=SLOW_REPLY))
    config = write(tmp_path, f"{server.url}/slow")

    with OtaiProcess("run", str(config), *JSON, "--shutdown-timeout", "0.3s") as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        server.wait_for_hits(1, "/slow", timeout=10)
        sent = otai.send_signal(signal.SIGTERM)
        code = exit_within(otai, sent)

    assert code == 0, otai.log_text()
    [cancelled] = otai.find("run.cancelled")
    assert cancelled["runner"] == "slow"
    assert cancelled["trigger"] == "tick"
    assert not otai.find("run.finished")
    [summary] = otai.find("runner.summary", runner="slow")
    assert summary["cancelled"] == 1
    assert otai.find("orchestrator.stopped")


def test_second_sigint_cancels_at_once(tmp_path: Path, server: HttpServer) -> None:
    server.respond("/slow", Reply(200, text="late", delay=SLOW_REPLY))
    # The drain would wait 60 s: only the second signal can end it early.
    config = write(tmp_path, f"{server.url}/slow", shutdown_timeout="60s")

    with OtaiProcess("run", str(config), *JSON) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        server.wait_for_hits(1, "/slow", timeout=10)
        otai.send_signal(signal.SIGINT)
        otai.wait_for_event("orchestrator.stopping", timeout=10)
        time.sleep(0.2)
        assert otai.proc.poll() is None, "the first SIGINT must drain, not exit"
        sent = otai.send_signal(signal.SIGINT)
        code = exit_within(otai, sent)

    assert code == 0, otai.log_text()
    assert [e["runner"] for e in otai.find("run.cancelled")] == ["slow"]
    assert otai.find("orchestrator.stopped")


def test_no_run_starts_after_the_stop_request(tmp_path: Path, server: HttpServer) -> None:
    # With one slot, "right" waits for "left" to finish. The stop request comes while it
    # waits: draining lets "left" finish, but "right" has not begun and must not begin then.
    server.respond("/a", Reply(200, text="a", delay=1.0))
    server.respond("/b", Reply(200, text="b", delay=1.0))
    path = tmp_path / "slots.yml"
    request = {"id": "request", "use": "HttpRequestPipe"}
    path.write_text(
        yaml.safe_dump(
            {
                "orchestrator": {
                    "max_concurrent_runs": 1,
                    "runners": [
                        {
                            "id": "left",
                            "on": [{"id": "tick", "params": {"milliseconds": 200}}],
                            "run": {**request, "params": {"url": f"{server.url}/a"}},
                        },
                        {
                            "id": "right",
                            "on": ["tick"],
                            "run": {**request, "params": {"url": f"{server.url}/b"}},
                        },
                    ],
                }
            }
        )
    )

    with OtaiProcess("run", str(path), *JSON) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        [first] = server.wait_for_hits(1, timeout=10)
        otai.send_signal(signal.SIGTERM)
        code = otai.wait(20)

    assert code == 0, otai.log_text()
    # Both runners are busy (one running, one waiting for the slot) from the first fire on,
    # so only the first run may ever start.
    started = otai.find("run.started")
    assert len(started) == 1, f"a run started after the stop request:\n{otai.log_text()}"
    assert [h.path for h in server.hits()] == [first.path]


def test_signal_when_idle_exits_promptly(tmp_path: Path, server: HttpServer) -> None:
    server.respond("/slow", Reply(200, text="ok"))
    # A long interval: nothing runs when the signal arrives.
    path = tmp_path / "idle.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "runners": [
                    {
                        "id": "idle",
                        "on": [{"id": "hourly", "params": {"interval": "1h"}}],
                        "run": {
                            "id": "r",
                            "use": "HttpRequestPipe",
                            "params": {"url": f"{server.url}/slow"},
                        },
                    }
                ]
            }
        )
    )

    with OtaiProcess("run", str(path), *JSON) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        sent = otai.send_signal(signal.SIGTERM)
        code = exit_within(otai, sent)

    assert code == 0, otai.log_text()
    assert not otai.find("orchestrator.stopping")
    [summary] = otai.find("runner.summary", runner="idle")
    assert summary["runs"] == 0
    assert otai.find("orchestrator.stopped")
    assert server.hits() == []


BLOCKING_PLUGIN = '''
import time

from open_ticket_ai import Pipe, PipeResult


class BlockingPipe(Pipe):
    """Blocks its worker thread for 8 s in sync code; cancellation cannot interrupt it."""

    def process(self, ctx):
        time.sleep(8)
        return PipeResult.success({"value": "done"})
'''


def test_forced_cancel_does_not_wait_for_a_blocked_sync_pipe(tmp_path: Path) -> None:
    (tmp_path / "blockmod.py").write_text(BLOCKING_PLUGIN)
    path = tmp_path / "block.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "runners": [
                    {
                        "id": "blocker",
                        "on": [{"id": "tick", "params": {"milliseconds": 100}}],
                        "run": {"id": "block", "use": "blockmod:BlockingPipe"},
                    }
                ]
            }
        )
    )

    with OtaiProcess(
        "run", str(path), *JSON, "--shutdown-timeout", "0.3s", pythonpath=tmp_path
    ) as otai:
        otai.wait_for_event("run.started", runner="blocker", timeout=15)
        sent = otai.send_signal(signal.SIGTERM)
        otai.wait_for_event("orchestrator.stopped", timeout=5)
        # The thread sleeps on for ~8 s; the process must not wait for it after the
        # shutdown deadlines passed (0.3 s drain + the cancel deadline).
        code = exit_within(otai, sent, seconds=4.0)

    assert code == 0, otai.log_text()
    assert otai.find("run.cancelled", runner="blocker")


def test_once_drains_the_run_on_signal(tmp_path: Path, server: HttpServer) -> None:
    server.respond("/slow", Reply(200, text="done", delay=1.0))
    config = write(tmp_path, f"{server.url}/slow")

    with OtaiProcess("run", "--once", "slow", str(config), *JSON) as otai:
        otai.wait_for_event("run.started", runner="slow", timeout=15)
        server.wait_for_hits(1, "/slow", timeout=10)
        otai.send_signal(signal.SIGTERM)
        code = otai.wait(20)

    assert code == 0, otai.log_text()
    [finished] = otai.find("run.finished", runner="slow")
    assert finished["status"] == "succeeded"


@pytest.mark.parametrize(
    ("signals", "options"),
    [
        pytest.param([signal.SIGTERM], ("--shutdown-timeout", "0.3s"), id="deadline"),
        pytest.param([signal.SIGINT, signal.SIGINT], (), id="second-sigint"),
    ],
)
def test_once_run_is_cancelled_by_signals(
    tmp_path: Path,
    server: HttpServer,
    signals: list[signal.Signals],
    options: tuple[str, ...],
) -> None:
    server.respond("/slow", Reply(200, text="late", delay=SLOW_REPLY))
    config = write(tmp_path, f"{server.url}/slow", shutdown_timeout="60s")

    with OtaiProcess("run", "--once", "slow", str(config), *JSON, *options) as otai:
        otai.wait_for_event("run.started", runner="slow", timeout=15)
        server.wait_for_hits(1, "/slow", timeout=10)
        for sig in signals:
            sent = otai.send_signal(sig)
            time.sleep(0.2)
        code = exit_within(otai, sent)

    assert code >= 0, "the signal must be handled, not kill the process"
    assert otai.find("run.cancelled", runner="slow"), otai.log_text()
    assert not otai.find("run.finished")


def test_no_run_starts_after_a_signal_that_came_while_the_loop_was_blocked(
    tmp_path: Path,
) -> None:
    # "block" blocks the event loop for 2 s; the signal arrives meanwhile. Timers of "tick"
    # that came due during the block are handled before the loop sees the stop request:
    # they must start nothing.
    path = tmp_path / "blocked.yml"
    sleep = {"id": "s", "use": "tests.runtime.timing_pipes:SleepPipe"}
    path.write_text(
        yaml.safe_dump(
            {
                "orchestrator": {
                    "runners": [
                        {
                            "id": "block",
                            "on": [{"id": "once_soon", "params": {"milliseconds": 300}}],
                            "run": {**sleep, "params": {"block": 2.0}},
                        },
                        {
                            "id": "tick",
                            "on": [{"id": "fast", "params": {"milliseconds": 100}}],
                            "run": {**sleep, "params": {"seconds": 0.0}},
                        },
                    ]
                }
            }
        )
    )
    root = Path(__file__).resolve().parents[2]
    with OtaiProcess("run", str(path), *JSON, pythonpath=root) as otai:
        [blocked] = [otai.wait_for_event("run.started", timeout=15, runner="block")]
        time.sleep(0.5)  # well inside the 2 s block
        otai.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = otai.wait(20)
    assert code == 0, otai.log_text()
    late = [e for e in otai.find("run.started") if e["_at"] > signalled]
    assert late == [], f"runs started after the signal:\n{otai.log_text()}"
    assert blocked


@pytest.mark.parametrize("stage", ["opening", "closing"])
def test_a_signal_while_a_service_hangs_stops_the_service_in_bounded_time(
    tmp_path: Path, stage: str
) -> None:
    mark = tmp_path / "opening"
    hang = {"open_for": 60.0} if stage == "opening" else {"close_for": 60.0}
    hang["mark"] = str(mark)  # type: ignore[assignment]
    path = tmp_path / "hang.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "services": [
                    {
                        "id": "desk",
                        "use": "tests.runtime.timing_pipes:HangingService",
                        "params": hang,
                    }
                ],
                "orchestrator": {
                    "shutdown_timeout": "1s",
                    "runners": [
                        {
                            "id": "tick",
                            "on": [{"id": "fast", "params": {"milliseconds": 200}}],
                            "run": {
                                "id": "x",
                                "use": "ExpressionPipe",
                                "params": {"expression": 1},
                            },
                        }
                    ],
                },
            }
        )
    )
    root = Path(__file__).resolve().parents[2]
    with OtaiProcess("run", str(path), *JSON, pythonpath=root) as otai:
        if stage == "closing":
            otai.wait_for_event("orchestrator.ready", timeout=15)
        else:
            for _ in range(300):  # until the service hangs in its 60 s opening
                if mark.exists():
                    break
                time.sleep(0.05)
            assert mark.exists(), otai.log_text()
        sent = otai.send_signal(signal.SIGTERM)
        code = exit_within(otai, sent, seconds=15)
    assert code == 0, otai.log_text()
    [abandoned] = otai.find("service.abandoned")
    assert (abandoned["service"], abandoned["stage"]) == ("desk", stage)
    if stage == "opening":
        assert not otai.find("run.started")


STUBBORN_PLUGIN = '''
import asyncio

from open_ticket_ai import Pipe, PipeResult


class StubbornPipe(Pipe):
    """Swallows every cancellation and sleeps on: a run that never ends by itself."""

    async def process(self, ctx):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
'''


@pytest.mark.parametrize("once", [False, True], ids=["serve", "once"])
def test_a_run_that_ignores_cancellation_does_not_hang_the_exit(tmp_path: Path, once: bool) -> None:
    (tmp_path / "stubbornmod.py").write_text(STUBBORN_PLUGIN)
    runner = {
        "id": "stubborn",
        "on": [{"id": "tick", "params": {"milliseconds": 100}}],
        "run": {"id": "hold", "use": "stubbornmod:StubbornPipe"},
    }
    path = tmp_path / "stubborn.yml"
    path.write_text(
        yaml.safe_dump({"orchestrator": {"cancel_timeout": "0.5s", "runners": [runner]}})
    )
    args = ("--once", "stubborn") if once else ()

    with OtaiProcess(
        "run", *args, str(path), *JSON, "--shutdown-timeout", "0.3s", pythonpath=tmp_path
    ) as otai:
        otai.wait_for_event("run.started", runner="stubborn", timeout=15)
        sent = otai.send_signal(signal.SIGTERM)
        # drain 0.3 s + cancel 0.5 s + 1 s, with room for a loaded machine
        code = exit_within(otai, sent, seconds=4.0)

    assert code == (1 if once else 0), otai.log_text()
    [stopping] = [e for e in otai.find("orchestrator.stopping") if "stubborn" in e]
    assert stopping["stubborn"] == ["stubborn"]
