"""What ``otai validate`` catches in templates before anything runs: names, the steps a
template asks about, ``item`` outside ``for_each``, environment variables, and the
CompositePipe spelling that ran nothing."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from open_ticket_ai import ConfigError, build, parse_config
from open_ticket_ai.cli.main import cli
from open_ticket_ai.core.compiled import CompiledConfig
from open_ticket_ai.runtime.orchestrator import Orchestrator


def compiled(steps: str, *, on: str = "[{id: t, params: {minutes: 5}}]") -> CompiledConfig:
    text = textwrap.dedent(
        f"""
        runners:
          - id: r
            on: {on}
            run:
              id: all
              steps:
        """
    ) + textwrap.indent(textwrap.dedent(steps), " " * 8)
    return build(parse_config(text, "config.yml"))


def problems(steps: str, **options: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        compiled(steps, **options)
    return [str(problem) for problem in caught.value.problems]


def test_an_unknown_name_and_an_unknown_function_are_refused_with_a_hint() -> None:
    [function, name] = problems(
        """
        - id: x
          use: ExpressionPipe
          params: {expression: "{{ undefined_thing + pipe_reslt('a') }}"}
        """
    )
    assert function.startswith("config.yml:11:32 ")
    assert "steps[0].params.expression: unknown function 'pipe_reslt'" in function
    assert "did you mean 'pipe_result'?" in function
    assert "unknown name 'undefined_thing'" in name
    assert "known here:" in name


def test_a_step_id_typo_and_a_step_that_runs_later_are_refused() -> None:
    found = problems(
        """
        - id: fetch
          use: ExpressionPipe
          params: {expression: 1}
        - id: use
          use: ExpressionPipe
          params: {expression: "{{ pipe_result('fecth') + pipe_result('later') }}"}
        - id: later
          use: ExpressionPipe
          params: {expression: 2}
        """
    )
    assert any("runner 'r' has no step 'fecth' (did you mean 'fetch'?)" in p for p in found)
    assert any("step 'later' has not run yet where this renders" in p for p in found)
    assert len(found) == 2


def test_what_is_in_scope_passes() -> None:
    config = compiled(
        """
        - id: fetch
          use: ExpressionPipe
          params: {expression: "{{ [1, 2] }}"}
        - id: each
          for_each: "{{ pipe_result('fetch') }}"
          if: "{{ item > 0 and has_succeeded('fetch') }}"
          steps:
            - id: double
              use: ExpressionPipe
              params: {expression: "{{ item * 2 + loop.index + parent | length }}"}
            - id: after
              use: ExpressionPipe
              params:
                expression: >-
                  {% for x in range(2) %}{{ loop.index }}{% endfor %}{% set y = 1 %}{{ y }}
                  {{ pipe_result('double') }} {{ pipe_result('nowhere', default=0) }}
                  {{ now() }} {{ runner }} {{ env.get('HOME') }}
        """
    )
    assert config.warnings == ()


def test_item_outside_for_each_says_where_it_is_defined() -> None:
    [problem] = problems(
        """
        - id: x
          use: ExpressionPipe
          params: {expression: "{{ item.id }}"}
        """
    )
    assert "'item' is only defined inside a for_each pipe" in problem


def test_a_for_each_expression_does_not_see_its_own_item() -> None:
    [problem] = problems(
        """
        - id: each
          for_each: "{{ item }}"
          use: ExpressionPipe
          params: {expression: 1}
        """
    )
    assert "steps[0].for_each: 'item' is only defined inside a for_each pipe" in problem


def test_service_and_trigger_params_see_only_env() -> None:
    text = """
    services:
      - id: desk
        use: SqliteTicketSystem
        params: {path: "{{ pipe_result('x') }}"}
    orchestrator:
      runners:
        - id: r
          run: {id: p, use: ExpressionPipe, params: {expression: 1}}
    """
    with pytest.raises(ConfigError) as caught:
        build(parse_config(textwrap.dedent(text), "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    assert "services[0].params.path: unknown name 'pipe_result'" in problem
    assert "see only 'env'" in problem


def test_an_unset_variable_in_a_pipe_is_a_warning_and_a_clear_error_at_run_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTAI_NOT_SET_HERE", raising=False)
    steps = """
    - id: x
      use: ExpressionPipe
      params: {expression: "{{ env.OTAI_NOT_SET_HERE }}"}
    """
    config = compiled(steps)
    [warning] = [str(w) for w in config.warnings]
    assert warning.startswith("config.yml:11:32 ")
    assert "environment variable OTAI_NOT_SET_HERE is not set" in warning
    result = asyncio.run(Orchestrator(config).run_once("r"))
    assert result.failed
    assert "environment variable OTAI_NOT_SET_HERE is not set" in result.message
    assert "dict object" not in result.message


def test_a_default_for_an_unset_variable_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTAI_NOT_SET_HERE", raising=False)
    config = compiled(
        """
        - id: x
          use: ExpressionPipe
          params: {expression: "{{ env.OTAI_NOT_SET_HERE | default('fallback') }}"}
        """
    )
    result = asyncio.run(Orchestrator(config).run_once("r"))
    assert result.succeeded


def test_an_unset_variable_in_a_service_is_an_error_at_its_exact_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTAI_HELPDESK_URL", raising=False)
    text = """
    services:
      - id: desk
        use: ZammadTicketSystem
        params:
          token: t
          url: "{{ env.OTAI_HELPDESK_URL }}"
    orchestrator:
      runners:
        - id: r
          run: {id: p, use: ExpressionPipe, params: {expression: 1}}
    """
    with pytest.raises(ConfigError) as caught:
        build(parse_config(textwrap.dedent(text), "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("config.yml:7:12 services[0].params.url: ")
    assert "environment variable OTAI_HELPDESK_URL is not set" in problem


def test_composite_params_steps_is_refused_with_the_fix() -> None:
    text = """
    runners:
      - id: r
        run:
          id: all
          use: CompositePipe
          params:
            steps:
              - {id: a, use: ExpressionPipe, params: {expression: 1}}
    """
    with pytest.raises(ConfigError) as caught:
        build(parse_config(textwrap.dedent(text), "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    assert "run.params.steps: steps go beside params, not inside them" in problem
    assert "runners[0].run.steps" in problem


def test_trigger_payload_without_an_event_trigger_is_a_warning() -> None:
    config = compiled(
        """
        - id: x
          use: ExpressionPipe
          params: {expression: "{{ trigger.payload }}"}
        """
    )
    [warning] = [str(w) for w in config.warnings]
    assert "trigger.payload: runner 'r' has no event trigger" in warning
    hooked = compiled(
        """
        - id: x
          use: ExpressionPipe
          params: {expression: "{{ trigger.payload }}"}
        """,
        on="[{id: hook, use: WebhookTrigger, params: {secret: s}}]",
    )
    assert hooked.warnings == ()


def test_validate_prints_warnings_and_exits_0_and_refuses_an_unset_listener_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTAI_LATER", "OTAI_HTTP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    warned = tmp_path / "warned.yml"
    warned.write_text(
        "runners:\n"
        "  - id: r\n"
        "    run: {id: p, use: ExpressionPipe, params: {expression: '{{ env.OTAI_LATER }}'}}\n"
    )
    done = CliRunner().invoke(cli, ["validate", str(warned)])
    assert done.exit_code == 0, done.output
    assert "warning: " in done.output
    assert "environment variable OTAI_LATER is not set" in done.output
    token = tmp_path / "token.yml"
    token.write_text(
        "orchestrator:\n"
        "  http: {token: '{{ env.OTAI_HTTP_TOKEN }}'}\n"
        "  runners:\n"
        "    - id: r\n"
        "      run: {id: p, use: ExpressionPipe, params: {expression: 1}}\n"
    )
    refused = CliRunner().invoke(cli, ["validate", str(token)])
    assert refused.exit_code == 2
    assert "token.yml:2:17 orchestrator.http.token: environment variable OTAI_HTTP_TOKEN" in (
        refused.output
    )


def _services_config(services: str, steps: str = "") -> str:
    pipe = steps or "{id: p, use: ExpressionPipe, params: {expression: 1}}"
    return (
        textwrap.dedent(services)
        + "orchestrator:\n  runners:\n    - id: r\n      run: "
        + pipe
        + "\n"
    )


def test_a_classifier_model_typo_is_an_error_and_a_model_file_to_train_a_warning(
    tmp_path: Path,
) -> None:
    services = """
    services:
      - id: queue_model
        use: ClassifierService
        params: {path: "%s"}
    """ % (tmp_path / "not-trained-yet.joblib")
    typo = _services_config(
        services, "{id: c, use: ClassifyPipe, params: {text: t, model: queue_modle}}"
    )
    with pytest.raises(ConfigError) as caught:
        build(parse_config(typo, "config.yml"))
    [problem] = [str(p) for p in caught.value.problems]
    assert "params.model: no service 'queue_modle' (services: queue_model)" in problem
    later = tmp_path / "models" / "later.joblib"
    by_path = _services_config(
        services, "{id: c, use: ClassifyPipe, params: {text: t, model: '" + str(later) + "'}}"
    )
    warnings = [str(w) for w in build(parse_config(by_path, "config.yml")).warnings]
    assert any("services[0].params.path: no model file at" in w for w in warnings)
    assert any("params.model: no service" in w and "otai train" in w for w in warnings)


def test_a_missing_model_file_fails_the_start_naming_it_and_how_to_make_it(
    tmp_path: Path,
) -> None:
    services = """
    services:
      - id: queue_model
        use: ClassifierService
        params: {path: "%s"}
    """ % (tmp_path / "missing.joblib")
    config = build(parse_config(_services_config(services), "config.yml"))
    with pytest.raises(Exception, match=r"service 'queue_model'.*missing\.joblib.*otai train"):
        asyncio.run(Orchestrator(config).run_once("r"))


def test_a_sqlite_helpdesk_in_a_missing_directory_is_refused_unless_created(
    tmp_path: Path,
) -> None:
    typo = tmp_path / "no-such-dir" / "helpdesk.sqlite"
    services = """
    services:
      - id: desk
        use: SqliteTicketSystem
        params: {path: "%s"%s}
    """
    steps = "{id: f, use: FetchTicketsPipe, params: {ticket_system: desk}}"
    refused = build(parse_config(_services_config(services % (typo, ""), steps), "c.yml"))
    [warning] = [str(w) for w in refused.warnings]
    assert "services[0].params.path: the directory" in warning
    assert "set create: true" in warning
    with pytest.raises(Exception, match=r"does not exist.*create: true"):
        asyncio.run(Orchestrator(refused).run_once("r"))
    assert not typo.parent.exists()
    created = build(
        parse_config(_services_config(services % (typo, ", create: true"), steps), "c.yml")
    )
    assert created.warnings == ()
    assert asyncio.run(Orchestrator(created).run_once("r")).succeeded
    assert typo.is_file()


def test_a_date_trigger_in_the_past_is_a_warning_logged_at_start() -> None:
    config = compiled(
        """
        - id: x
          use: ExpressionPipe
          params: {expression: 1}
        """,
        on="[{id: once, use: DateTrigger, params: {at: '2020-01-01T00:00:00+00:00'}}]",
    )
    [warning] = [str(w) for w in config.warnings]
    assert "on[0].params.at: 2020-01-01T00:00:00+00:00 passed" in warning
    assert "will never fire" in warning
