"""Configs in Open Ticket AI's 1.0 format (the seed's) load as written: module paths, ids it
allowed to leave out, runner settings and defaults, injects, its classification pipe and
its logging are translated before validation; what has no meaning here is a notice."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.core.config.upstream_support import HERE

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.tickets.pipes import AddNotePipe, FetchTicketsPipe, UpdateTicketPipe

ENV = {"OTAI_UPSTREAM_DESK": "desk.sqlite", "OTAI_UPSTREAM_MODEL": "model-dir"}
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_a_v10_config_loads_and_says_how_it_was_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    loaded = load_config(str(HERE / "v10-route.yml"))
    assert loaded.problems == ()
    notices = list(loaded.notices)
    assert notices[0] == (
        "read as Open Ticket AI 1.0 format; `otai migrate CONFIG` writes it in this "
        "project's format"
    )
    said = " | ".join(notices)
    for expected in (
        "service 'jinja_default' (open_ticket_ai.base.template_renderers.jinja_renderer:"
        "JinjaRenderer): templates are built in here",
        "infrastructure.default_template_renderer: templates are built in here",
        "orchestrator.defaults.template_renderer: templates are built in here",
        "pipe_defaults.retry: 1 attempt(s) retries nothing",
        "runner 'route-runner' priority: no meaning here",
        "runner 'runner-2' retry: 0 attempt(s) retries nothing",
        "runner 'runner-2' concurrency.max_workers 2: runs of one runner never overlap here",
        "concurrency.when_exhausted 'skip': a fire while the runner runs is skipped here",
        "'subject_classify' token: models are read from the local Hugging Face cache",
        "classify -> subject_classify, update -> subject_update",
        "read as orchestrator.logging (level 'WARNING', file 'var/upstream-v10.log')",
    ):
        assert expected in said, expected


def test_every_v10_construct_is_mapped_onto_this_projects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    loaded = load_config(str(HERE / "v10-route.yml"))
    config = loaded.config
    # logging, services (the renderer dropped, the model service added)
    assert config.orchestrator.logging.level == "WARNING"
    assert config.orchestrator.logging.file == "var/upstream-v10.log"
    assert [(s.id, s.use) for s in config.services] == [
        ("desk", "SqliteTicketSystem"),
        ("hf_local", "HFClassificationService"),
    ]
    route, start = config.orchestrator.runners
    # generated ids: from the runner's pipe, else its position; the class and position
    assert (route.id, start.id, start.run.id) == ("route-runner", "runner-2", "runner-2-run")
    # runner settings under params: timeout, retry of the whole pipeline, wait -> queue_one
    assert route.timeout == 300
    assert route.overlap == "queue_one"
    assert route.run.retry is not None
    assert route.run.retry.attempts == 2
    assert start.overlap == "skip"
    assert start.run.retry is None
    fetch, ticket, queue, subject = route.run.steps
    assert fetch.use == "FetchTicketsPipe"
    assert fetch.params == {
        "ticket_system": "desk",
        "ticket_search_criteria": "{{ parent.params.search }}",
    }
    assert ticket.use == "ExpressionPipe"
    classify, update, note = queue.steps
    assert (classify.use, update.use, note.use, note.id) == (
        "ClassificationPipe",
        "UpdateTicketPipe",
        "AddNotePipe",
        "add-note-3",
    )
    assert classify.params == {
        "model_name": "{{ env.OTAI_UPSTREAM_MODEL }}",
        "text": "{{ parent.params.ticket.subject }} {{ parent.params.ticket.body }}",
        "classification_service": "hf_local",
    }
    # pipe_defaults: given to every pipe without steps that has none of its own
    assert fetch.timeout == classify.timeout == 60
    assert queue.timeout is None
    # the second composite's ids are renamed, and its templates with them
    assert [s.id for s in subject.steps] == ["subject_classify", "subject_update"]
    assert "pipe_result('subject_classify', 'label')" in str(subject.steps[1].params)
    compiled = build(loaded)
    [pipeline] = [r.pipeline for r in compiled.runners if r.id == "route-runner"]
    classes = [s.pipe_class for s in pipeline.steps[2].steps]
    assert classes[1:] == [UpdateTicketPipe, AddNotePipe]
    assert pipeline.steps[0].pipe_class is FetchTicketsPipe


def test_an_error_in_a_v10_config_points_into_the_original_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    text = (HERE / "v10-route.yml").read_text()
    text = text.replace(
        'search_criteria: "{{ parent.params.search }}"', "search_criteria: {limit: 0}"
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "search_criteria: {limit" in row)
    assert problem.startswith(f"config.yml:{line}:")
    assert "ticket_search_criteria.limit: must be greater than or equal to 1" in problem


def test_an_unknown_upstream_module_path_lists_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    text = (
        (HERE / "v10-route.yml")
        .read_text()
        .replace(
            "open_ticket_ai.base:ExpressionPipe", "open_ticket_ai.base.pipes.nope:ExpressionPipe"
        )
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(text, "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "pipes.nope" in row)
    assert problem.startswith(f"config.yml:{line}:")
    assert "no such component of Open Ticket AI's here; the module paths known are" in problem
    assert "open_ticket_ai.base.pipes.ticket_system_pipes.fetch_tickets_pipe:FetchTicketsPipe" in (
        problem
    )
    with pytest.raises(ConfigError) as caught:
        build(
            parse_config(
                "runners:\n  - id: r\n    run: {id: p, use: 'otai_nothing.module:Pipe'}\n",
                "config.yml",
            )
        )
    assert "the module paths known are" in str(caught.value)


@pytest.mark.parametrize(
    ("use", "ours"),
    [
        ("open_ticket_ai.base:FetchTicketsPipe", FetchTicketsPipe),
        (
            "open_ticket_ai.base.ticket_system_pipes.fetch_tickets_pipe:FetchTicketsPipe",
            FetchTicketsPipe,
        ),
        (
            "open_ticket_ai.base.pipes.ticket_system_pipes.update_ticket_pipe:UpdateTicketPipe",
            UpdateTicketPipe,
        ),
        ("open_ticket_ai.base.pipes.ticket_system_pipes:AddNotePipe", AddNotePipe),
    ],
)
def test_a_v10_module_path_names_our_component(use: str, ours: type) -> None:
    from open_ticket_ai.core.component import Component
    from open_ticket_ai.core.registry import Registry

    assert Registry().resolve(use, Component) is ours


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("seed-*.yml")))
def test_the_seeds_configs_are_this_projects_format(example: str) -> None:
    loaded = load_config(str(EXAMPLES / example))
    assert loaded.problems == ()
    assert loaded.notices == ()  # nothing to translate: read natively, no notice


def test_our_own_format_keeps_its_errors_for_missing_ids() -> None:
    loaded = parse_config(
        "runners:\n  - run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n", "c.yml"
    )
    assert loaded.notices == ()
    assert [p.message for p in loaded.problems] == ["is required"]
