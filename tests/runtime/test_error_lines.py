"""Errors a person can act on: an ordinary failure (a refused connection, a helpdesk's error)
is one line with the step's config path and the cause, its traceback only at DEBUG; a bug
keeps its traceback; retries are logged at INFO with their delay."""

from __future__ import annotations

import asyncio
import logging
import socket
import textwrap

import pytest

from open_ticket_ai import build, parse_config
from open_ticket_ai.runtime.orchestrator import Orchestrator


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused_config(step_retry: str = "") -> str:
    return textwrap.dedent(
        f"""
        services:
          - id: desk
            use: ZammadTicketSystem
            params: {{url: "http://127.0.0.1:{closed_port()}", token: t, retries: 1,
                      retry_backoff: 0.01}}
        orchestrator:
          runners:
            - id: r
              run:
                id: all
                steps:
                  - id: fetch
                    use: FetchTicketsPipe
                    params: {{ticket_system: desk}}
                    {step_retry}
        """
    )


def failed_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "run.failed"]


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG], ids=["info", "debug"])
def test_a_refused_connection_is_one_line_with_the_step_and_the_cause(
    caplog: pytest.LogCaptureFixture, level: int
) -> None:
    caplog.set_level(level, "open_ticket_ai")
    result = asyncio.run(Orchestrator(build(parse_config(refused_config(), "c.yml"))).run_once("r"))
    assert result.failed
    [record] = failed_records(caplog)
    line = record.getMessage()
    assert "step 'fetch' failed: c.yml:" in line
    assert "orchestrator.runners[0].run.steps[0]: zammad 'desk': GET /tickets/search" in line
    assert "ConnectError" in line
    assert (record.exc_info is not None) == (level == logging.DEBUG)  # the traceback: DEBUG
    retries = [r for r in caplog.records if getattr(r, "event", None) == "helpdesk.retry"]
    assert len(retries) == 1
    assert retries[0].levelno == logging.INFO
    assert "attempt 1 failed" in retries[0].getMessage()
    assert "again in 10ms" in retries[0].getMessage()


def test_a_step_retry_is_logged_at_info_with_its_delay(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "open_ticket_ai")
    text = refused_config("retry: {attempts: 2, delay: 20ms}")
    asyncio.run(Orchestrator(build(parse_config(text, "c.yml"))).run_once("r"))
    [retry] = [r for r in caplog.records if getattr(r, "event", None) == "step.retry"]
    assert retry.levelno == logging.INFO
    message = retry.getMessage()
    assert "runner 'r': c.yml:" in message
    assert "attempt 1 failed" in message
    assert "again in 20ms" in message


BUGGY = """
from open_ticket_ai import Pipe, PipeResult


class Buggy(Pipe):
    async def process(self, ctx):
        return {}["missing"]
"""


def test_a_bug_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
    tmp_path: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "buggymod.py").write_text(BUGGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    caplog.set_level(logging.INFO, "open_ticket_ai")
    text = "runners:\n  - id: r\n    run: {id: b, use: 'buggymod:Buggy'}\n"
    asyncio.run(Orchestrator(build(parse_config(text, "c.yml"))).run_once("r"))
    [record] = failed_records(caplog)
    assert "c.yml:3 runners[0].run: KeyError: 'missing'" in record.getMessage()
    assert record.exc_info is not None
