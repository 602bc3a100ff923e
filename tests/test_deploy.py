"""Deployment: the Dockerfile, the systemd unit, the container health check, ``make``'s
installs and ``make run``'s Ctrl-C.

The image is built where a Docker daemon answers and the unit verified where
``systemd-analyze`` is installed; elsewhere those two tests skip, saying what is missing. The
files' essentials, the health check against a real ``otai run``, the install split and the
foreground wrapper under a real terminal are checked everywhere.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from tests.support.otai_process import OtaiProcess, write_config

from open_ticket_ai.core.config.models import OrchestratorConfig

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "open-ticket-ai.service"
HEALTHCHECK = ROOT / "scripts" / "healthcheck.py"
FOREGROUND = ROOT / "scripts" / "foreground.py"
DISTRIBUTION = "ticketflow-orchestrator"


def _instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def _systemd_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    assert match, f"TimeoutStopSec={value} is not in seconds or minutes"
    return int(match[1]) * (60 if match[2] == "min" else 1)


# -- the files, everywhere -------------------------------------------------------------------


def test_dockerfile_runs_otai_as_a_non_root_user_with_a_health_check() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    keywords = [k for k, _ in steps]
    assert steps[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", steps[0][1]), steps[0]

    users = [args for k, args in steps if k == "USER"]
    assert users, "no USER: the service would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    # The user is set before what runs: the health check and the command.
    assert keywords.index("USER") < keywords.index("HEALTHCHECK") < keywords.index("CMD")

    (check,) = [args for k, args in steps if k == "HEALTHCHECK"]
    assert "CMD" in check
    assert "healthcheck.py" in check
    assert "/config/config.yml" in check
    (command,) = [args for k, args in steps if k == "CMD"]
    assert json.loads(command) == ["otai", "run", "/config/config.yml"]

    installs = [args for k, args in steps if k == "RUN" and "pip install" in args]
    assert installs, "the package is not installed"
    for args in installs:
        # The package alone: no extras (test, bench, ml) and no editable install.
        assert not re.search(r"\.\[|-e\b|--editable", args), args


def test_dockerignore_keeps_the_build_context_to_what_the_image_uses() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword == "COPY":
            copied.update(part.rstrip("/").removeprefix("./") for part in args.split()[:-1])
    assert copied <= kept, f"the Dockerfile copies what .dockerignore leaves out: {copied - kept}"


def test_unit_restarts_on_failure_and_waits_for_the_shutdown() -> None:
    service = _unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service.get("User") not in (None, "", "root", "0")
    executable, run, config = service["ExecStart"].split()
    assert Path(executable).name == "otai"
    assert run == "run"
    assert config.endswith(".yml")

    # systemd's SIGKILL must come after the orchestrator's own deadlines, with a margin.
    defaults = OrchestratorConfig()
    deadlines = defaults.shutdown_timeout + defaults.cancel_timeout
    assert (defaults.shutdown_timeout, defaults.cancel_timeout) == (30.0, 5.0)
    assert _systemd_seconds(service["TimeoutStopSec"]) >= deadlines + 5


def test_the_stop_deadline_in_the_docs_matches_the_unit() -> None:
    stop = _systemd_seconds(_unit()["Service"]["TimeoutStopSec"])
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert f"TimeoutStopSec={stop:g}s" in deploy
    # docker stop's default 10 s would SIGKILL a shutdown in progress: both say how long.
    defaults = OrchestratorConfig()
    docker_stop = defaults.shutdown_timeout + defaults.cancel_timeout + 5
    assert f"docker stop -t {docker_stop:g}" in deploy
    assert f"docker stop -t {docker_stop:g}" in DOCKERFILE.read_text()


# -- docker and systemd, where they are ------------------------------------------------------


def _docker_unavailable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    try:
        info = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        reason = (info.stderr.strip() or info.stdout.strip()).splitlines()
        return "no Docker daemon answers `docker info`: " + (reason[-1] if reason else "")
    return None


@pytest.mark.timeout(900)
def test_the_image_builds_runs_otai_as_non_root_and_has_no_test_tools() -> None:
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)
    tag = f"ticketflow-orchestrator-test:{os.getpid()}"
    build = subprocess.run(
        ["docker", "build", "--quiet", "--tag", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:

        def in_image(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["docker", "run", "--rm", "--entrypoint", command[0], tag, *command[1:]],
                capture_output=True,
                text=True,
                timeout=120,
            )

        version = in_image("otai", "--version")
        assert version.returncode == 0, version.stderr
        assert version.stdout.startswith("otai, version ")
        uid = in_image("id", "-u")
        assert uid.stdout.strip() not in ("", "0"), uid
        packages = in_image("python", "-m", "pip", "list", "--format", "json")
        names = {p["name"].lower() for p in json.loads(packages.stdout)}
        assert DISTRIBUTION in names
        assert "scikit-learn" in names
        assert not names & {"pytest", "ruff", "mypy", "playwright", "apscheduler", "torch"}
        inspect = subprocess.run(
            ["docker", "image", "inspect", tag, "--format", "{{json .Config}}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        config = json.loads(inspect.stdout)
        assert config["Healthcheck"]["Test"][0] == "CMD"
        assert config["Cmd"] == ["otai", "run", "/config/config.yml"]
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, timeout=120)


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    # `verify` wants ExecStart's binary to exist: this environment's otai stands in for the
    # path the unit installs it at. The rest of the unit is verified as shipped.
    otai = Path(sys.executable).with_name("otai")
    if not otai.is_file():
        pytest.skip(f"no otai beside {sys.executable} to stand in for ExecStart's binary")
    text = UNIT.read_text()
    shipped = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
    assert shipped
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={shipped[1]}", f"ExecStart={otai}"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Other units of the machine may be reported on; nothing about this one may be.
    about_ours = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    assert not about_ours, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # The verification above can fail: a unit whose ExecStart does not exist does.
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    copy = tmp_path / UNIT.name
    copy.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={tmp_path}/missing", UNIT.read_text(), flags=re.M)
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0


# -- the health check against a real otai run ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


RUNNERS = (
    "  runners:\n"
    "    - id: tick\n"
    "      on: [{id: every_minute, params: {minutes: 1}}]\n"
    "      run: {id: noop, use: ExpressionPipe, params: {expression: '1'}}\n"
)


def test_health_check_asks_livez_when_the_listener_is_on(tmp_path: Path) -> None:
    port = _free_port()
    config = write_config(
        tmp_path, f"orchestrator:\n  state_path: false\n  http: {{port: {port}}}\n{RUNNERS}"
    )
    with OtaiProcess("run", str(config), "--log-format", "json") as otai:
        otai.wait_for_event("orchestrator.listening", timeout=20)
        alive = _health(config)
        otai.send_signal(signal.SIGTERM)
        assert otai.wait(20) == 0
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert alive.stdout.strip() == f"healthy: http://127.0.0.1:{port}/livez answered 200"
    gone = _health(config)
    assert gone.returncode == 1
    assert gone.stdout.startswith(f"unhealthy: http://127.0.0.1:{port}/livez did not answer")


def test_health_check_asks_otai_status_without_a_listener(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"orchestrator:\n{RUNNERS}")
    with OtaiProcess("run", str(config), "--log-format", "json") as otai:
        otai.wait_for_event("orchestrator.ready", timeout=20)
        alive = _health(config)
        otai.send_signal(signal.SIGTERM)
        assert otai.wait(20) == 0
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert alive.stdout.startswith(f"healthy: instance: running (pid {otai.proc.pid})")
    gone = _health(config)
    assert (gone.returncode, gone.stdout.strip()) == (
        1,
        "unhealthy: instance: not running (its state file is not held)",
    )


def test_health_check_fails_on_a_config_it_cannot_read(tmp_path: Path) -> None:
    broken = write_config(tmp_path, "orchestrator: [unclosed\n")
    done = _health(broken)
    assert done.returncode == 1
    assert done.stdout.startswith(f"unhealthy: cannot read {broken}")


# -- make: the installs, Ctrl-C ----------------------------------------------------------------


def _make_dry_run(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on PATH")
    # -W pretends pyproject.toml changed, so each stamp's install is printed.
    done = subprocess.run(
        [make, "-n", "-C", str(ROOT), "-W", "pyproject.toml", target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pip_installs(commands: str) -> list[str]:
    return [line.split("install", 1)[1] for line in commands.splitlines() if "pip install" in line]


def test_make_run_installs_the_package_alone_and_test_and_bench_their_extras() -> None:
    run = [i for i in _pip_installs(_make_dry_run("run")) if "--upgrade pip" not in i]
    assert [i.split() for i in run] == [["-q", "-e", "."]]
    assert "scripts/foreground.py" in _make_dry_run("run")
    (test,) = [i for i in _pip_installs(_make_dry_run("lint")) if "--upgrade pip" not in i]
    assert "'.[test,ml]'" in test
    (bench,) = [i for i in _pip_installs(_make_dry_run("bench")) if "--upgrade pip" not in i]
    assert "bench" in bench
    assert "test" not in bench
    assert re.search(r"rm -rf .*\bvar\b", _make_dry_run("clean"))


def test_the_main_job_needs_no_extra() -> None:
    # `make run` installs the base dependencies: scikit-learn, which the main job's
    # ClassifierService model files need, is one; torch is only in the ml extra.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    names = [
        re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    ]
    assert "scikit-learn" in names
    assert "torch" not in names
    assert "transformers" not in names
    extras = project["optional-dependencies"]
    torch_pins = [d for d in extras["ml"] if d.startswith("torch")]
    assert torch_pins
    assert all("torch" not in " ".join(extras[e]) for e in ("test", "bench"))
    # On x86-64 Linux only the CPU build satisfies the pin: never the CUDA one.
    assert any("+cpu" in pin and "platform_machine == 'x86_64'" in pin for pin in torch_pins), (
        torch_pins
    )


def test_the_installed_distribution_is_ours_and_gives_otai_its_version() -> None:
    dist = importlib.metadata.distribution(DISTRIBUTION)
    scripts = {e.name: e.value for e in dist.entry_points.select(group="console_scripts")}
    assert scripts == {"otai": "open_ticket_ai.cli.main:main"}
    done = subprocess.run(
        [sys.executable, "-c", "from open_ticket_ai.cli.main import main; main()", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == f"otai, version {dist.version}", done.stderr


SERVICE = """
import signal, sys, time
stopping = []
signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
print("service ready", flush=True)
while not stopping:
    time.sleep(0.02)
time.sleep(0.3)  # a shutdown that takes a moment, as otai run's does
print("service stopped cleanly", flush=True)
"""


def _ctrl_c_under_make(tmp_path: Path, recipe: str) -> tuple[int, str]:
    """Run ``make`` in a new terminal (a pty), press Ctrl-C once the service is ready, and
    return make's exit code and everything the terminal showed."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on PATH")
    pty = pytest.importorskip("pty", reason="no pseudo-terminals on this platform")
    (tmp_path / "service.py").write_text(SERVICE)
    (tmp_path / "Makefile").write_text(f"job:\n\t{recipe}\n\t@echo make carried on\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        os.chdir(tmp_path)
        os.execv(make, [make, "--no-print-directory", "job"])
    seen = b""

    def read_until(marker: bytes, seconds: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the terminal closed: everything has exited
                    return
                if not chunk:
                    return
                seen += chunk

    try:
        read_until(b"service ready", 20)
        assert b"service ready" in seen, seen
        os.write(fd, b"\x03")  # what the terminal sends for Ctrl-C
        read_until(b"\0never", 5)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_ctrl_c_under_make_reaches_only_the_wrapped_service(tmp_path: Path) -> None:
    code, shown = _ctrl_c_under_make(
        tmp_path, f"{sys.executable} {FOREGROUND} {sys.executable} service.py"
    )
    assert "service stopped cleanly" in shown, shown
    assert "make carried on" in shown, shown
    assert "Interrupt" not in shown, shown
    assert "***" not in shown, shown
    assert code == 0, shown


def test_ctrl_c_under_make_without_the_wrapper_interrupts_make(tmp_path: Path) -> None:
    # The failure the wrapper prevents: make gets the Ctrl-C too and never carries on.
    code, shown = _ctrl_c_under_make(tmp_path, f"{sys.executable} service.py")
    assert "make carried on" not in shown, shown
    assert code != 0, shown


def test_without_a_terminal_the_wrapper_is_the_command_itself() -> None:
    # No terminal (CI, a pipe): plain exec, same pid, the command's exit status.
    done = subprocess.Popen(
        [
            sys.executable,
            str(FOREGROUND),
            sys.executable,
            "-c",
            "import os, sys; print(os.getpid()); sys.exit(3)",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = done.communicate(timeout=30)
    assert (done.returncode, out.strip()) == (3, str(done.pid))
    missing = subprocess.run(
        [sys.executable, str(FOREGROUND), "/nonexistent/command"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 127
    assert "foreground: cannot run /nonexistent/command" in missing.stderr
