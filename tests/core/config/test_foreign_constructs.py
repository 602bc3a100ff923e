"""Constructs from Open Ticket AI's docs that no version accepts: each is an error that names
it and says what to write here, never a misleading close match."""

from __future__ import annotations

import textwrap

import pytest

from open_ticket_ai import ConfigError, build, parse_config


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(parse_config(textwrap.dedent(text), "config.yml"))
    return [str(problem) for problem in caught.value.problems]


RUNNER = "runners:\n  - id: r\n    run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("orchestrator:\n  pipes: []\n", "unknown key 'pipes': runners run one pipe each"),
        (
            "orchestrator:\n  pipelines: []\n",
            "unknown key 'pipelines': write each pipeline as a runner",
        ),
        (
            "runners:\n  - id: r\n    run_every_milli_seconds: 5000\n"
            "    run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n",
            "unknown key 'run_every_milli_seconds': a runner fires on its triggers",
        ),
        (
            "runners:\n  - id: r\n    run: {id: p, pipe_name: x}\n",
            "unknown key 'pipe_name': give the pipe an 'id' and its class as 'use'",
        ),
        (
            "runners:\n  - id: r\n    run: {id: p, uses: ExpressionPipe}\n",
            "unknown key 'uses': the component is named by 'use'",
        ),
        (
            "runners:\n  - id: r\n    run: {id: p, use: ExpressionPipe, with: {expression: 1}}\n",
            "unknown key 'with': a component's settings go under 'params'",
        ),
        (
            "runners:\n  - id: r\n    run: {id: p, use: ExpressionPipe, expression: 1}\n",
            "unknown key 'expression': a component's params go under 'params:'",
        ),
    ],
    ids=["pipes", "pipelines", "run_every", "pipe_name", "uses", "with", "flat-params"],
)
def test_a_construct_no_version_accepts_says_what_to_write(text: str, says: str) -> None:
    assert any(says in p for p in problems(text)), problems(text)


def test_model_name_says_how_to_declare_a_model_here() -> None:
    text = """
    runners:
      - id: r
        run: {id: c, use: ClassifyPipe, params: {text: t, model: m.otai, model_name: x/y}}
    """
    [problem] = [p for p in problems(text) if "model_name" in p]
    assert "declare a ClassifierService" in problem
    assert "did you mean 'model'" not in problem


def test_a_shell_variable_says_to_write_a_template() -> None:
    text = """
    runners:
      - id: r
        run: {id: p, use: HttpRequestPipe, params: {url: "${HELPDESK_URL:-x}/tickets"}}
    """
    [problem] = [p for p in problems(text) if "not replaced" in p]
    assert "run.params.url: '${HELPDESK_URL:-x}' is not replaced here" in problem
    assert "write '{{ env.HELPDESK_URL }}'" in problem


def test_our_own_config_is_untouched() -> None:
    build(parse_config(RUNNER, "config.yml"))
