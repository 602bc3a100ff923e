"""A real Request Tracker 5 for the RT adapter's tests, provisioned by scripts/rt5-test-server.sh.

The session fixture :func:`rt_server` installs RT from Debian packages when it is missing
(~35 s, the only step that needs root and the package mirrors), creates a fresh SQLite db
in a temporary directory, seeds queues, a custom field and root's auth token, starts
rt-server on a free port of 127.0.0.1 and stops it at the end of the session. When RT
cannot be installed here (not root, not Debian, no mirror), every test that uses it skips
with the script's reason. Import it into a test module::

    from tests.tickets.rt_server import RtServer, rt_server  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["QUEUES", "SCRIPT", "RtServer", "rt_server", "running_rt_server"]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rt5-test-server.sh"
QUEUES = ("Incoming", "Billing", "Paging")
CUSTOM_FIELDS = ("otai_label",)
TIME_ZONE = "America/New_York"
"""RT's $Timezone here: not UTC, so a date sent in the wrong zone shows in the tests."""
CANNOT_INSTALL = 77
"""The script's exit status for "RT cannot be installed here"."""
SETUP_SECONDS = 300
"""Install (~35 s measured, more on a slow mirror) + initdb + seed + start (~4 s)."""


@dataclass(frozen=True)
class RtServer:
    """A running RT: ``url`` is its base (REST2 under ``/REST/2.0``), ``token`` root's."""

    url: str
    token: str
    state_dir: Path
    time_zone: str = TIME_ZONE
    username: str = "root"
    password: str = "password"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _run(step: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), step],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def running_rt_server(state_dir: Path, queues: Sequence[str] = QUEUES) -> Iterator[RtServer]:
    """Provision and start RT with its state in ``state_dir`` and these queues; stop it on
    leaving."""
    if shutil.which("bash") is None:
        pytest.skip("RT tests need bash to run scripts/rt5-test-server.sh")
    port = free_port()
    env = {
        **os.environ,
        "RT_STATE_DIR": str(state_dir),
        "RT_HOST": "127.0.0.1",
        "RT_PORT": str(port),
        "RT_QUEUES": ",".join(queues),
        "RT_CUSTOM_FIELDS": ",".join(CUSTOM_FIELDS),
        "RT_TIMEZONE": TIME_ZONE,
    }
    try:
        started = _run("all", env, timeout=SETUP_SECONDS - 30)
    except subprocess.TimeoutExpired as exc:
        _run("stop", env, timeout=30)
        pytest.fail(f"{SCRIPT.name} all took longer than {exc.timeout:.0f} s: {exc.stderr!r}")
    if started.returncode == CANNOT_INSTALL:
        reason = started.stderr.strip().splitlines()[-1]
        pytest.skip(f"{reason} (scripts/rt5-test-server.sh)")
    if started.returncode != 0:
        pytest.fail(
            f"{SCRIPT.name} all failed with status {started.returncode}:\n"
            + "\n".join(started.stderr.splitlines()[-40:])
        )
    try:
        token = (state_dir / "token").read_text().strip()
        yield RtServer(url=f"http://127.0.0.1:{port}", token=token, state_dir=state_dir)
    finally:
        _run("stop", env, timeout=30)


@pytest.fixture(scope="session")
def rt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtServer]:
    """RT for the whole session; its set-up counts against the first test that asks for it
    (mark that one ``@pytest.mark.timeout(SETUP_SECONDS)``)."""
    with running_rt_server(tmp_path_factory.mktemp("rt5")) as server:
        yield server
