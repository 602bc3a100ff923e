"""``otai trigger``: manual fires against a running ``otai run`` (a real subprocess)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from tests.support.http_server import HttpServer, Reply, closed_port_url
from tests.support.otai_process import OtaiProcess

from open_ticket_ai.cli.trigger import trigger_command

TOKEN = "let-me-fire"


def write_config(path: Path, server: HttpServer, **http: object) -> Path:
    document = {
        "orchestrator": {
            "http": http,
            "runners": [
                {
                    "id": "slow",
                    "on": [{"id": "daily", "params": {"days": 1}}],
                    "run": {
                        "id": "call",
                        "use": "HttpRequestPipe",
                        "params": {"url": f"{server.url}/slow"},
                    },
                }
            ],
        }
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def start(config: Path, env: dict[str, str] | None = None) -> tuple[OtaiProcess, str]:
    otai = OtaiProcess("run", str(config), "--log-format", "json", env=env)
    try:
        listening = otai.wait_for_event("orchestrator.listening", timeout=15)
        otai.wait_for_event("orchestrator.ready")
    except BaseException:
        otai.close()
        raise
    return otai, f"http://127.0.0.1:{listening['port']}"


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer() as srv:
        srv.respond("/slow", Reply(200, text="ok", delay=1.0))
        yield srv


@pytest.fixture
def instance(tmp_path: Path, server: HttpServer) -> Iterator[tuple[OtaiProcess, str]]:
    otai, url = start(write_config(tmp_path / "config.yml", server, port=0, token=TOKEN))
    with otai:
        yield otai, url


def trigger(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(trigger_command, list(args), catch_exceptions=False)


def test_started_prints_the_run_id_and_exits_0(instance: tuple[OtaiProcess, str]) -> None:
    otai, url = instance
    result = trigger("slow", "--url", url, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert result.stdout == "slow-1\n"
    assert otai.wait_for_event("run.started", runner="slow")["trigger"] == "manual"


def test_a_busy_runner_is_refused_with_exit_1(instance: tuple[OtaiProcess, str]) -> None:
    _, url = instance
    assert trigger("slow", "--url", url, "--token", TOKEN).exit_code == 0
    result = trigger("slow", "--url", url, "--token", TOKEN)
    assert result.exit_code == 1
    assert "refused" in result.stderr
    assert "busy" in result.stderr
    assert "slow-1" in result.stderr


def test_the_token_may_come_from_the_environment(instance: tuple[OtaiProcess, str]) -> None:
    _, url = instance
    result = trigger("slow", "--url", url, env={"OTAI_TRIGGER_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert result.stdout == "slow-1\n"


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("ghost", "--token", TOKEN), "no runner 'ghost' (runners: slow)"),
        (("slow", "--token", "wrong"), "the token was not accepted"),
        (("slow",), "give --token or set OTAI_TRIGGER_TOKEN"),
    ],
)
def test_wrong_requests_exit_2_with_the_reason(
    instance: tuple[OtaiProcess, str], args: tuple[str, ...], wanted: str
) -> None:
    otai, url = instance
    result = trigger(*args, "--url", url, env={"OTAI_TRIGGER_TOKEN": ""})
    assert result.exit_code == 2
    assert wanted in result.stderr
    assert not otai.find("run.started")


def test_manual_fires_disabled_without_a_token_in_the_config(
    tmp_path: Path, server: HttpServer
) -> None:
    otai, url = start(write_config(tmp_path / "config.yml", server, port=0))
    with otai:
        result = trigger("slow", "--url", url, "--token", "anything")
    assert result.exit_code == 2
    assert "manual fires are disabled" in result.stderr


def test_host_port_and_token_come_from_the_config(tmp_path: Path, server: HttpServer) -> None:
    # The token is a template, rendered with the environment by the instance and the command.
    port = int(closed_port_url().rsplit(":", 1)[1])
    token = "{{ env.OTAI_CMD_TEST_TOKEN }}"
    config = write_config(tmp_path / "config.yml", server, port=port, token=token)
    env = {"OTAI_CMD_TEST_TOKEN": TOKEN, "OTAI_TRIGGER_TOKEN": ""}
    otai, _ = start(config, env)
    with otai:
        result = trigger("slow", "--config", str(config), env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "slow-1\n"


def test_no_instance_listening_exits_2(tmp_path: Path, server: HttpServer) -> None:
    url = closed_port_url()
    result = trigger("slow", "--url", url, "--token", TOKEN)
    assert result.exit_code == 2
    assert f"cannot reach {url}" in result.stderr
    config = write_config(tmp_path / "config.yml", server, port=0, token=TOKEN)
    result = trigger("slow", "--config", str(config))
    assert result.exit_code == 2
    assert "port: 0" in result.stderr
    result = trigger("slow", "--url", "127.0.0.1:8765")
    assert result.exit_code == 2
    assert "--url must start with http://" in result.stderr
