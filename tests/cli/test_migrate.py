"""``otai migrate``: a config in Open Ticket AI's 1.0 or 1.1+ format written in this project's,
with its comments and a mark on each translated spot; the migrated config validates and
compiles to the same runners, pipes, triggers and services as the original."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.core.config.upstream_support import (
    ABSENT,
    HERE,
    PASSWORDS,
    SHARED,
    SHARED_FILES,
    specs,
)

from open_ticket_ai import build, parse_config
from open_ticket_ai.cli.main import cli
from open_ticket_ai.core.config.loader import load_config

FIXTURES = ["v10-route.yml", "v11-classify.yml", "v11-route.yml"]
ENV = {"OTAI_UPSTREAM_DESK": "desk.sqlite", "OTAI_UPSTREAM_MODEL": "model-dir", **PASSWORDS}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def migrated(path: Path, tmp_path: Path) -> tuple[str, Path]:
    """``otai migrate PATH -o OUT``'s file, written beside a copy of nothing: OUT is in
    ``tmp_path``; its text and path."""
    out = tmp_path / f"migrated-{path.name}"
    result = CliRunner().invoke(cli, ["migrate", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text(), out


def does_the_same(original: Path, text: str, out: Path) -> None:
    again = parse_config(text, str(out))
    assert again.problems == ()
    # this project's format: nothing left to translate (plugins written as distributions are
    # checked here too, and say so)
    assert [n for n in again.notices if not n.startswith("plugin ")] == []
    assert specs(build(again)) == specs(build(load_config(str(original))))


@pytest.mark.parametrize("name", FIXTURES)
def test_a_migrated_fixture_validates_and_compiles_the_same(name: str, tmp_path: Path) -> None:
    text, out = migrated(HERE / name, tmp_path)
    does_the_same(HERE / name, text, out)
    assert text.startswith("# Written by `otai migrate` from " + name)
    assert "# was: use: " in text


@pytest.mark.skipif(not SHARED.is_dir(), reason=ABSENT)
@pytest.mark.parametrize("name", SHARED_FILES)
def test_every_shared_upstream_config_migrates_and_compiles_the_same(
    name: str, tmp_path: Path
) -> None:
    text, out = migrated(SHARED / name, tmp_path)
    does_the_same(SHARED / name, text, out)


def test_comments_are_kept_and_translated_spots_marked(tmp_path: Path) -> None:
    text, _ = migrated(HERE / "v10-route.yml", tmp_path)
    lines = text.splitlines()

    def line_of(fragment: str) -> str:
        return next(row for row in lines if fragment in row)

    # whole-line comments stay before what they stood before, end-of-line ones beside it
    before = lines.index(line_of("# ===== ROUTING: one runner, no id ====="))
    assert "- id: route-runner" in lines[before + 1]
    assert "# the embedded helpdesk" in line_of("- id: desk")
    assert "# tickets waiting in Incoming" in line_of("- id: fetch")
    # marks: what was written there in the old format
    assert line_of("use: FetchTicketsPipe").endswith(
        "# was: use: open_ticket_ai.base.pipes.ticket_system_pipes.fetch_tickets_pipe:"
        "FetchTicketsPipe"
    )
    assert line_of("ticket_system: desk").endswith("# was: injects")
    assert "# was: search_criteria" in line_of("ticket_search_criteria:")
    assert "# generated: Open Ticket AI 1.0 needed no runner id" in line_of("- id: route-runner")
    assert "# was: id: classify" in line_of("- id: subject_classify")
    assert "# was: concurrency: {max_workers: 1, when_exhausted: wait}" in line_of(
        " overlap: queue_one"
    )
    assert "# was: infrastructure.logging" in line_of("    logging:")
    assert "# added: " in line_of("- id: hf_local")
    # the notices head the file, as comments
    assert "#   - runner 'route-runner' priority: no meaning here" in text
    # a template keeps its text; no environment value is written into the file
    assert "{{ env.OTAI_UPSTREAM_DESK }}" in text
    assert "desk.sqlite" not in text


def test_migrate_prints_to_stdout_without_o() -> None:
    result = CliRunner().invoke(cli, ["migrate", str(HERE / "v11-route.yml")])
    assert result.exit_code == 0, result.output
    assert "\nopen_ticket_ai:  # was: otai:\n" in result.output
    assert "use: FetchTicketsPipe  # was: use: base:FetchTicketsPipe" in result.output


def test_migrate_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text((HERE / "v11-route.yml").read_text())
    result = CliRunner().invoke(cli, ["migrate", str(config), "-o", str(config)])
    assert result.exit_code == 2
    assert "that is the input" in result.output
    assert config.read_text() == (HERE / "v11-route.yml").read_text()


def test_a_config_in_this_projects_format_is_said_to_be_so(tmp_path: Path) -> None:
    out = tmp_path / "out.yml"
    examples = Path(__file__).resolve().parents[2] / "examples"
    result = CliRunner().invoke(cli, ["migrate", str(examples / "demo.yml"), "-o", str(out)])
    assert result.exit_code == 0
    assert "in this project's format already; nothing to migrate" in result.output
    assert not out.exists()


def test_bad_input_is_one_line_with_its_place_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("open_ticket_ai:\n  services:\n    - id: [unclosed\n")
    result = CliRunner().invoke(cli, ["migrate", str(broken)])
    assert result.exit_code == 2
    # as otai validate says it: the count, then one line per problem with its place
    assert result.output.splitlines()[1].strip().startswith(f"{broken}:4:1: YAML syntax error")
    assert result.output == CliRunner().invoke(cli, ["validate", str(broken)]).output
    wrong = tmp_path / "wrong.yml"
    text = (HERE / "v11-route.yml").read_text().replace("'>=1.0.0'", "'>=9'")
    wrong.write_text(text)
    result = CliRunner().invoke(cli, ["migrate", str(wrong)])
    assert result.exit_code == 2
    assert f"{wrong}:3:" in result.output
    assert "api_version '>=9' cannot be met" in result.output
    missing = CliRunner().invoke(cli, ["migrate", str(tmp_path / "none.yml")])
    assert missing.exit_code == 2
    assert "config file not found" in missing.output
