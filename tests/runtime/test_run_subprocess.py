"""``otai run`` end to end: a real subprocess against a real HTTP server that records hits.

Timing checks use generous bounds: they tell a schedule apart from a broken one (drift, a
blocked loop, overlapping runs), never measure speed.
"""

from __future__ import annotations

import itertools
import signal
import statistics
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.http_server import HttpServer, Reply
from tests.support.otai_process import OtaiProcess

JSON = ("--log-format", "json")


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer() as srv:
        yield srv


def write(tmp_path: Path, runners: list[dict[str, Any]], **orchestrator: Any) -> Path:
    """A config file with an ``orchestrator:`` root holding ``runners``."""
    path = tmp_path / "config.yml"
    document = {"orchestrator": {**orchestrator, "runners": runners}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def http(url: str, **params: Any) -> dict[str, Any]:
    return {"id": "request", "use": "HttpRequestPipe", "params": {"url": url, **params}}


def every(trigger_id: str, milliseconds: int) -> dict[str, Any]:
    return {"id": trigger_id, "params": {"milliseconds": milliseconds}}


def stop(otai: OtaiProcess, sig: signal.Signals = signal.SIGINT) -> int:
    otai.send_signal(sig)
    return otai.wait(20)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# -- schedule -----------------------------------------------------------------------------


def test_interval_keeps_rate_and_grid_without_drift(tmp_path: Path, server: HttpServer) -> None:
    # Each response takes 100 ms: a schedule of "last finish + interval" would drift by at
    # least that much per fire (0.9 s over 9 fires); a fixed grid does not drift at all.
    interval = 0.2
    server.respond("/tick", Reply(200, text="ok", delay=0.1))
    config = write(
        tmp_path, [{"id": "ticker", "on": [every("grid", 200)], "run": http(f"{server.url}/tick")}]
    )

    with OtaiProcess("run", str(config), *JSON) as otai:
        ready = otai.wait_for_event("orchestrator.ready", timeout=15)
        window_end = ready["_at"] + 2.0
        sleep_until(window_end + 0.05)
        assert stop(otai) == 0

    in_window = [h.at for h in server.hits("/tick") if h.at <= window_end]
    # 10 grid points in 2 s; more than 11 means extra fires, few means a stalled schedule.
    assert 6 <= len(in_window) <= 11, in_window

    hits = [h.at for h in server.hits("/tick")]
    assert len(hits) >= 6
    # Anchor the grid on the median offset, so one late hit does not shift the others.
    anchor = statistics.median(at - k * interval for k, at in enumerate(hits))
    errors = [at - (anchor + k * interval) for k, at in enumerate(hits)]
    assert max(abs(e) for e in errors) < 0.15, errors
    # The error does not grow with k: the fitted period is the interval.
    period = statistics.linear_regression(range(len(hits)), hits).slope
    assert abs(period - interval) < 0.02, (period, errors)


def test_slow_run_is_never_overlapped_and_skips_are_counted(
    tmp_path: Path, server: HttpServer
) -> None:
    server.respond("/slow", Reply(200, text="ok", delay=0.45))
    config = write(
        tmp_path,
        [{"id": "slowpoke", "on": [every("fast", 100)], "run": http(f"{server.url}/slow")}],
    )

    with OtaiProcess("run", str(config), *JSON) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        server.wait_for_hits(4, "/slow", timeout=15)
        assert stop(otai) == 0

    hits = [h.at for h in server.hits("/slow")]
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    # A request can only start after the previous response, which the server holds 0.45 s.
    assert min(gaps) >= 0.44, gaps

    skipped = otai.find("run.skipped")
    assert skipped, otai.log_text()
    assert all(e["runner"] == "slowpoke" and e["trigger"] == "fast" for e in skipped)
    [summary] = otai.find("runner.summary", runner="slowpoke")
    assert summary["skips"] == len(skipped) > 0
    assert summary["runs"] == len(otai.find("run.started", runner="slowpoke")) == len(hits)
    assert otai.find("orchestrator.stopped")


BLOCKING_PLUGIN = '''
import time

from open_ticket_ai import Pipe, PipeResult


class BlockingPipe(Pipe):
    """Blocks its thread for 2 s in sync code."""

    def process(self, ctx):
        time.sleep(2)
        return PipeResult.success({"value": "done"})
'''


def test_failing_and_blocking_runners_do_not_slow_a_healthy_one(
    tmp_path: Path, server: HttpServer
) -> None:
    (tmp_path / "blockmod.py").write_text(BLOCKING_PLUGIN)
    server.respond("/ok", Reply(200, text="ok"))
    server.respond("/fail", Reply(500, text="boom"))
    config = write(
        tmp_path,
        [
            {"id": "healthy", "on": [every("h", 100)], "run": http(f"{server.url}/ok")},
            {"id": "failing", "on": [every("f", 100)], "run": http(f"{server.url}/fail")},
            {
                "id": "blocker",
                "on": [every("b", 100)],
                "run": {"id": "block", "use": "blockmod:BlockingPipe"},
            },
        ],
    )

    with OtaiProcess("run", str(config), *JSON, pythonpath=tmp_path) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        blocked = otai.wait_for_event("run.started", runner="blocker", timeout=10)["_at"]
        window = (blocked, blocked + 2.5)
        sleep_until(window[1] + 0.05)
        assert stop(otai) == 0

    healthy = [h.at for h in server.hits("/ok") if window[0] <= h.at <= window[1]]
    # 25 fires are due in the window; a loop blocked by the sync pipe would leave a 2 s hole.
    assert len(healthy) >= 12, healthy
    points = [window[0], *healthy, window[1]]
    gaps = [b - a for a, b in itertools.pairwise(points)]
    assert max(gaps) < 1.0, gaps

    failures = otai.find("run.failed", runner="failing")
    assert len(failures) >= 5
    assert "500" in failures[0]["error"]
    assert otai.find("run.skipped", runner="blocker")
    assert not otai.find("run.failed", runner="healthy")


@pytest.mark.parametrize("reference_first", [False, True], ids=["defined-first", "listed-first"])
def test_shared_trigger_fires_every_runner_that_lists_it(
    tmp_path: Path, server: HttpServer, reference_first: bool
) -> None:
    server.respond("/a", Reply(200, text="a"))
    server.respond("/b", Reply(200, text="b"))
    defining = {
        "id": "first",
        "on": [every("shared_tick", 200)],
        "run": http(f"{server.url}/a", query={"trigger": "{{ trigger }}"}),
    }
    listing = {
        "id": "second",
        "on": ["shared_tick"],
        "run": http(f"{server.url}/b", query={"trigger": "{{ trigger }}"}),
    }
    config = write(tmp_path, [listing, defining] if reference_first else [defining, listing])

    with OtaiProcess("run", str(config), *JSON) as otai:
        ready = otai.wait_for_event("orchestrator.ready", timeout=15)
        server.wait_for_hits(3, "/a", timeout=10)
        server.wait_for_hits(3, "/b", timeout=10)
        assert stop(otai) == 0

    assert ready["triggers"] == 1  # one timer serves both runners
    a, b = server.hits("/a"), server.hits("/b")
    for hit in [*a, *b]:
        assert hit.query == {"trigger": ["shared_tick"]}
    # Both runners fire on the same ticks.
    for hit_a, hit_b in zip(a, b, strict=False):
        assert abs(hit_a.at - hit_b.at) < 0.15
    for runner in ("first", "second"):
        started = otai.find("run.started", runner=runner)
        assert len(started) >= 3
        assert {e["trigger"] for e in started} == {"shared_tick"}


def test_runner_with_two_triggers_fires_on_each(tmp_path: Path, server: HttpServer) -> None:
    server.respond("/multi", Reply(200, text="ok"))
    config = write(
        tmp_path,
        [
            {
                "id": "multi",
                "on": [every("fast", 300), every("slow", 700)],
                "run": http(f"{server.url}/multi", query={"trigger": "{{ trigger }}"}),
            }
        ],
    )

    with OtaiProcess("run", str(config), *JSON) as otai:
        ready = otai.wait_for_event("orchestrator.ready", timeout=15)
        otai.wait_for_event("run.finished", runner="multi", trigger="slow", count=2, timeout=10)
        assert stop(otai) == 0

    assert ready["triggers"] == 2
    started = otai.find("run.started", runner="multi")
    by_trigger = {name: [e for e in started if e["trigger"] == name] for name in ("fast", "slow")}
    assert len(by_trigger["fast"]) >= 3
    assert len(by_trigger["slow"]) >= 2
    assert len(by_trigger["fast"]) + len(by_trigger["slow"]) == len(started)
    seen = [h.query["trigger"] for h in server.hits("/multi")]
    assert seen.count(["fast"]) == len(by_trigger["fast"])
    assert seen.count(["slow"]) == len(by_trigger["slow"])


def test_max_concurrent_runs_one_keeps_two_slow_runners_apart(
    tmp_path: Path, server: HttpServer
) -> None:
    server.respond("/a", Reply(200, text="a", delay=0.3))
    server.respond("/b", Reply(200, text="b", delay=0.3))
    config = write(
        tmp_path,
        [
            {"id": "left", "on": [every("l", 100)], "run": http(f"{server.url}/a")},
            {"id": "right", "on": [every("r", 100)], "run": http(f"{server.url}/b")},
        ],
        max_concurrent_runs=1,
    )

    with OtaiProcess("run", str(config), *JSON) as otai:
        otai.wait_for_event("orchestrator.ready", timeout=15)
        server.wait_for_hits(6, timeout=15)
        assert stop(otai) == 0

    hits = sorted(server.hits(), key=lambda h: h.at)
    assert {h.path for h in hits} == {"/a", "/b"}
    gaps = [(b.at - a.at, a.path, b.path) for a, b in itertools.pairwise(hits)]
    # Each request starts only after the previous one (0.3 s held by the server) answered.
    assert min(g[0] for g in gaps) >= 0.29, gaps
    assert len(server.hits("/a")) >= 2
    assert len(server.hits("/b")) >= 2


# -- one-time runners and --once ----------------------------------------------------------


@pytest.mark.parametrize(("b_status", "code"), [(200, 0), (500, 1)])
def test_one_time_runners_exit_by_their_results(
    tmp_path: Path, server: HttpServer, b_status: int, code: int
) -> None:
    server.respond("/a", Reply(200, text="a"))
    server.respond("/b", Reply(b_status, text="b"))
    config = write(
        tmp_path,
        [
            {"id": "one", "run": http(f"{server.url}/a")},
            {"id": "two", "run": http(f"{server.url}/b")},
        ],
    )

    with OtaiProcess("run", str(config), *JSON) as otai:
        assert otai.wait(20) == code, otai.log_text()

    assert len(server.hits("/a")) == 1
    assert len(server.hits("/b")) == 1
    assert len(otai.find("run.failed")) == (1 if code else 0)
    assert otai.find("orchestrator.stopped")


@pytest.mark.parametrize(("status", "code"), [(200, 0), (500, 1)])
def test_once_runs_that_runner_once(
    tmp_path: Path, server: HttpServer, status: int, code: int
) -> None:
    server.respond("/a", Reply(status, text="a"))
    server.respond("/b", Reply(200, text="b"))
    config = write(
        tmp_path,
        [
            {"id": "poll", "on": [every("quick", 100)], "run": http(f"{server.url}/a")},
            {"id": "other", "on": [every("quick2", 100)], "run": http(f"{server.url}/b")},
            {"id": "boot", "run": http(f"{server.url}/b")},
        ],
    )

    with OtaiProcess("run", "--once", "poll", str(config), *JSON) as otai:
        assert otai.wait(20) == code, otai.log_text()

    assert len(server.hits("/a")) == 1
    assert server.hits("/b") == []
    [started] = otai.find("run.started")
    assert started["runner"] == "poll"


def test_once_with_unknown_runner_fails_with_a_message(tmp_path: Path, server: HttpServer) -> None:
    server.respond("/a", Reply(200, text="a"))
    config = write(tmp_path, [{"id": "poll", "run": http(f"{server.url}/a")}])

    with OtaiProcess("run", "--once", "no_such_runner", str(config), *JSON) as otai:
        code = otai.wait(20)

    assert code != 0
    assert "no_such_runner" in otai.stderr_text
    assert "poll" in otai.stderr_text  # the known runners are named
    assert server.hits() == []


@pytest.mark.parametrize("once", [(), ("--once", "good")], ids=["run", "once"])
def test_bad_config_starts_nothing(
    tmp_path: Path, server: HttpServer, once: tuple[str, ...]
) -> None:
    server.respond("/a", Reply(200, text="a"))
    config = tmp_path / "broken.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            runners:
              - id: good
                run:
                  id: fetch
                  use: HttpRequestPipe
                  params: {{url: "{server.url}/a"}}
              - id: ticking
                on:
                  - id: every_bit
                    params: {{milliseconds: -5}}
                run:
                  id: fetch
                  use: HttpRequestPipe
                  params: {{url: "{server.url}/a"}}
              - id: bad
                run:
                  id: nothing
                  use: NoSuchPipe
            """
        )
    )

    with OtaiProcess("run", *once, str(config), *JSON) as otai:
        code = otai.wait(20)
    time.sleep(0.2)  # a request sent just before exit would have arrived by now

    assert code == 2, otai.log_text()
    text = otai.stderr_text
    assert "broken.yml:10" in text
    assert "milliseconds" in text
    assert "broken.yml:18" in text
    assert "NoSuchPipe" in text
    assert not otai.find("run.started")
    assert server.hits() == []
