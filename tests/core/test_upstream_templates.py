"""Templates written as Open Ticket AI writes them render here: get_pipe_result, get_env,
get_parent_param, at_path (function and filter), parent.params.X, pipe_results and
parent_params; and validate checks them as it checks ours."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.core.templates import at_path
from open_ticket_ai.errors import TemplateError
from open_ticket_ai.runtime.orchestrator import Orchestrator

CONFIG = """
services:
  - id: desk
    use: SqliteTicketSystem
    params: {path: "{{ get_env('OTAI_UPSTREAM_DIR') }}/h.sqlite", create: true}
orchestrator:
  runners:
    - id: r
      run:
        id: outer
        use: CompositePipe
        params: {queue: Billing, nested: {deep: [10, 20]}}
        steps:
          - id: fetch
            use: ExpressionPipe
            params: {expression: "{{ [{'id': 7, 'queue': {'name': 'Inbox'}}] }}"}
          - id: read
            use: ExpressionPipe
            params:
              expression: >-
                {{ [get_pipe_result('fetch', 'value')[0]['id'],
                    pipe_results['fetch']['value'][0]['id'],
                    at_path(get_pipe_result('fetch'), '0.queue.name'),
                    get_pipe_result('fetch') | at_path('0.id'),
                    get_env('OTAI_UPSTREAM_NAME'),
                    get_parent_param('queue'),
                    parent.params.queue,
                    parent_params.nested.deep[1]] }}
"""


def test_upstream_template_names_render(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTAI_UPSTREAM_DIR", str(tmp_path))
    monkeypatch.setenv("OTAI_UPSTREAM_NAME", "upstream")
    orchestrator = Orchestrator(build(parse_config(textwrap.dedent(CONFIG), "config.yml")))
    ended: list[object] = []
    orchestrator.bus.subscribe(ended.append, name="test")
    result = asyncio.run(orchestrator.run_once("r"))
    assert result.succeeded, result.message
    [run] = [e for e in ended if getattr(e, "results", None)]
    assert run.results["read"].data["value"] == [  # type: ignore[attr-defined]
        7,
        7,
        "Inbox",
        7,
        "upstream",
        "Billing",
        "Billing",
        20,
    ]


def test_get_env_outside_the_allowlist_says_which_variables_templates_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME_OF_NOBODY", "x")
    text = """
    runners:
      - id: r
        run: {id: p, use: ExpressionPipe, params: {expression: "{{ get_env('HOME_OF_NOBODY') }}"}}
    """
    result = asyncio.run(
        Orchestrator(build(parse_config(textwrap.dedent(text), "c.yml"))).run_once("r")
    )
    assert result.failed
    assert "get_env('HOME_OF_NOBODY')" in result.message
    assert "env_allowlist" in result.message


def test_a_get_pipe_result_typo_is_caught_at_load() -> None:
    text = """
    runners:
      - id: r
        run:
          id: all
          steps:
            - {id: fetch, use: ExpressionPipe, params: {expression: 1}}
            - {id: x, use: ExpressionPipe, params: {expression: "{{ get_pipe_result('fecth') }}"}}
    """
    with pytest.raises(ConfigError, match=r"get_pipe_result\('fecth'\).*did you mean 'fetch'"):
        build(parse_config(textwrap.dedent(text), "c.yml"))


def test_at_path_follows_keys_and_indexes_and_says_where_it_stopped() -> None:
    value = {"a": [{"b": 1}, {"b": 2}]}
    assert at_path(value, "a.1.b") == 2
    assert at_path(value, "") == value
    with pytest.raises(TemplateError, match=r"no 'c' in 'a\.0\.c'"):
        at_path(value, "a.0.c")
    with pytest.raises(TemplateError, match="no item 5"):
        at_path(value, "a.5")
