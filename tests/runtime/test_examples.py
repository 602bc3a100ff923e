"""Every shipped example validates and each of its runners runs; so do the seed's configs.

``examples/*.yml`` go through ``otai validate`` and ``otai run --once RUNNER_ID`` as real
subprocesses. The configs of the orchestrator's original description (its ```yaml blocks,
kept as written in ``seed_configs/``) have their placeholders filled with ExpressionPipe
configs, and every whole config and every runner or trigger list is validated.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.http_server import HttpServer, Reply
from tests.support.otai_process import OtaiProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))
SEED = Path(__file__).parent / "seed_configs"
"""The YAML blocks of the orchestrator's original description, kept as written, one file
each (``block-N.yml``, in the order the description shows them)."""

EXPECTED_EXIT = {("demo.yml", "always_fails"): 1}
"""Runners that fail on purpose (the demo shows a failing runner beside healthy ones)."""

TICKETS = [{"id": 1, "title": "printer on fire"}, {"id": 2, "title": "password reset"}]


def runner_ids(path: Path) -> list[str]:
    """The runner ids of a config in any root form."""
    document = yaml.safe_load(path.read_text())
    app = document.get("open_ticket_ai", document)
    orchestrator = app.get("orchestrator", app)
    return [runner["id"] for runner in orchestrator.get("runners", [])]


EXAMPLE_RUNNERS = [
    pytest.param(path, runner_id, id=f"{path.name}:{runner_id}")
    for path in EXAMPLES
    for runner_id in runner_ids(path)
]


@pytest.fixture
def helpdesk() -> Iterator[HttpServer]:
    """The helpdesk seed-time-based.yml polls: GET /tickets answers a JSON list."""
    with HttpServer() as server:
        server.respond("/tickets", Reply(200, json=TICKETS))
        yield server


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make run` prepares for ticket-routing.yml: a helpdesk and trained models."""
    directory = tmp_path_factory.mktemp("demo")
    with OtaiProcess(
        "demo", "setup", "--dir", str(directory), "--tickets", "150", "--incoming", "8"
    ) as otai:
        code = otai.wait(120)
    assert code == 0, otai.log_text()
    return directory


def beside(path: Path, directory: Path) -> Path:
    """A copy of example ``path`` in ``directory``: what a run leaves beside its config (the
    run ledger under ``var/``) stays out of the repository."""
    copy = directory / path.name
    shutil.copyfile(path, copy)
    return copy


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 2
    assert all(runner_ids(path) for path in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path, demo_dir: Path) -> None:
    with OtaiProcess("validate", str(path), env={"OTAI_DEMO_DIR": str(demo_dir)}) as otai:
        code = otai.wait(30)
    assert code == 0, otai.log_text()
    assert any(": ok," in line for line in otai.stdout_lines), otai.log_text()


@pytest.mark.parametrize(("path", "runner_id"), EXAMPLE_RUNNERS)
def test_example_runner_runs_once(
    path: Path, runner_id: str, helpdesk: HttpServer, demo_dir: Path, tmp_path: Path
) -> None:
    expected = EXPECTED_EXIT.get((path.name, runner_id), 0)
    env = {"OTAI_HELPDESK_URL": helpdesk.url, "OTAI_DEMO_DIR": str(demo_dir)}
    path = beside(path, tmp_path)

    with OtaiProcess(
        "run", "--once", runner_id, str(path), "--log-format", "json", env=env, cwd=ROOT
    ) as otai:
        code = otai.wait(30)

    assert code == expected, otai.log_text()
    [started] = otai.find("run.started")
    assert started["runner"] == runner_id
    assert otai.find("run.finished" if expected == 0 else "run.failed", runner=runner_id)


def one_time_only(path: Path) -> bool:
    document = yaml.safe_load(path.read_text())
    app = document.get("open_ticket_ai", document)
    runners = app.get("orchestrator", app).get("runners", [])
    # PyYAML reads the key `on` as the boolean true (YAML 1.1); otai's loader does not.
    return all(not runner.get("on", runner.get(True)) for runner in runners)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if one_time_only(p)], ids=lambda p: p.name)
def test_one_time_example_runs_to_completion(path: Path, tmp_path: Path) -> None:
    with OtaiProcess("run", str(beside(path, tmp_path)), "--log-format", "json") as otai:
        code = otai.wait(30)

    assert code == 0, otai.log_text()
    assert len(otai.find("run.finished")) == len(runner_ids(path))
    assert otai.find("orchestrator.stopped")


def test_time_based_example_reads_the_helpdesk(helpdesk: HttpServer, tmp_path: Path) -> None:
    path = ROOT / "examples" / "seed-time-based.yml"
    if not path.exists():
        pytest.skip("examples/seed-time-based.yml is not shipped")
    env = {"OTAI_HELPDESK_URL": helpdesk.url}
    path = beside(path, tmp_path)

    with OtaiProcess(
        "run", "--once", "periodic_classifier", str(path), "--log-format", "json", env=env
    ) as otai:
        code = otai.wait(30)

    assert code == 0, otai.log_text()
    [hit] = helpdesk.hits("/tickets")
    assert hit.method == "GET"
    assert hit.query == {"state": ["new"]}


# -- the seed document --------------------------------------------------------------------

PLACEHOLDER_PIPE = '{id: placeholder, use: ExpressionPipe, params: {expression: "placeholder"}}'
UNKNOWN_PIPES = ("SomePipe", "MaintenancePipe", "CacheWarmupPipe")


def fill_placeholders(block: str) -> str:
    """Replace the seed's placeholders with configs that exist."""
    lines = []
    for line in block.splitlines():
        line = re.sub(r"(\bon:\s*)\[\.\.\.\]", r"\1[]", line)
        line = line.replace("[...]", f"[{PLACEHOLDER_PIPE}]")
        line = line.replace("{...}", PLACEHOLDER_PIPE)
        match = re.fullmatch(rf"(\s*)use:\s*({'|'.join(UNKNOWN_PIPES)})\s*(#.*)?", line)
        if match:
            indent = match.group(1)
            lines.append(f"{indent}use: ExpressionPipe")
            lines.append(f'{indent}params: {{expression: "{match.group(2)} placeholder"}}')
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def wrap_fragment(block: str) -> str:
    """A seed fragment as a whole config: a runner list under ``runners:``, a trigger list
    under a runner's ``on:``."""
    indented = "".join(f"      {line}\n" for line in block.splitlines())
    if re.search(r"^\s+run:", block, re.MULTILINE):
        return "runners:\n" + "".join(f"  {line}\n" for line in block.splitlines())
    return f"runners:\n  - id: fragment_runner\n    run: {PLACEHOLDER_PIPE}\n    on:\n{indented}"


def seed_blocks(*, fragments: bool = False) -> list[Any]:
    """The seed's whole configs (or, with ``fragments``, its runner and trigger lists)."""
    files = sorted(SEED.glob("block-*.yml"), key=lambda p: int(p.stem.split("-")[1]))
    blocks = [path.read_text() for path in files]
    whole = re.compile(r"^(orchestrator|runners):", re.MULTILINE)
    if fragments:
        # The RunnerDefinition block names "module:PipeClass": examples/seed-definitions.yml
        # is that block filled in, and is run above.
        chosen = [
            wrap_fragment(b)
            for b in blocks
            if not whole.search(b) and b.startswith("- ") and '"module:' not in b
        ]
    else:
        chosen = [b for b in blocks if whole.search(b)]
    return [pytest.param(block, id=f"block{i}") for i, block in enumerate(chosen)]


def test_seed_has_whole_configs() -> None:
    assert len(list(SEED.glob("block-*.yml"))) == 9
    blocks = [p.values[0] for p in seed_blocks()]
    assert len(blocks) >= 3
    assert all("[...]" not in fill_placeholders(b) for b in blocks)
    unknown = re.compile(rf"use:\s*({'|'.join(UNKNOWN_PIPES)})\b")
    assert not any(unknown.search(fill_placeholders(b)) for b in blocks)
    assert any(unknown.search(b) for b in blocks)  # the seed does use placeholders


@pytest.mark.parametrize("block", seed_blocks())
def test_seed_config_validates(block: str, tmp_path: Path) -> None:
    path = tmp_path / "seed.yml"
    path.write_text(fill_placeholders(block))

    with OtaiProcess("validate", str(path)) as otai:
        code = otai.wait(30)

    assert code == 0, f"{path.read_text()}\n{otai.log_text()}"


@pytest.mark.parametrize("block", seed_blocks(fragments=True))
def test_seed_fragment_validates_inside_a_config(block: str, tmp_path: Path) -> None:
    path = tmp_path / "fragment.yml"
    path.write_text(fill_placeholders(block))

    with OtaiProcess("validate", str(path)) as otai:
        code = otai.wait(30)

    assert code == 0, f"{path.read_text()}\n{otai.log_text()}"
