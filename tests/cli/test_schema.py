"""``otai schema``: a draft 2020-12 JSON Schema that takes every config the loader takes (the
shipped examples, the docs' configs, each form a validator widens), rejects clearly wrong
ones, and offers editors the components' names and their params."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic import field_validator

from open_ticket_ai import ParamsModel, Pipe, PipeContext, PipeResult
from open_ticket_ai.cli.main import cli
from open_ticket_ai.cli.schema import DIALECT, OPEN_COMMENT, config_schema
from open_ticket_ai.core.config.loader import parse_config
from open_ticket_ai.core.config.yaml_source import load_yaml
from open_ticket_ai.core.factory import build
from open_ticket_ai.core.pipes.pipe import Pipe as PipeBase
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.core.services import Service
from open_ticket_ai.core.triggers.base import Trigger
from open_ticket_ai.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def doc_blocks() -> list[tuple[str, str]]:
    """Every ```yaml block of the README and docs/, named ``doc:line``."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"^```ya?ml[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
            found.append((f"{doc.name}:{text.count(chr(10), 0, match.start()) + 1}", match[1]))
    return found


BLOCKS = doc_blocks()


def loader_accepts(text: str, name: str = "config.yml") -> bool:
    try:
        return not parse_config(text, name).problems
    except ConfigError:
        return False


ACCEPTED_BLOCKS = [(name, text) for name, text in BLOCKS if loader_accepts(text, name)]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema)


def as_an_editor_reads(value: Any) -> Any:
    """The loaded YAML as JSON: timestamps (``at: 2030-01-01T09:00:00``) are their text."""
    if isinstance(value, dict):
        return {key: as_an_editor_reads(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_an_editor_reads(item) for item in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return value


def schema_errors(validator: Draft202012Validator, text: str) -> list[str]:
    data, _ = load_yaml(text, "config.yml")
    errors = list(validator.iter_errors(as_an_editor_reads(data)))
    best = best_match(errors)
    if best is None:
        return []
    return [f"{'/'.join(map(str, best.absolute_path))}: {best.message}"]


def definition(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return found


def offered(use: dict[str, Any]) -> set[str]:
    return {option["const"] for option in use["anyOf"] if "const" in option}


def params_for(schema: dict[str, Any], model: str, use: str) -> dict[str, Any]:
    """The Params schema the ``if``/``then`` of ``model`` gives ``params`` for ``use``."""
    for rule in schema["$defs"][model]["allOf"]:
        if use in rule["if"].get("properties", {}).get("use", {}).get("enum", []):
            params = rule["then"]["properties"]["params"]
            return definition(schema, params["anyOf"][0] if "anyOf" in params else params)
    raise AssertionError(f"no params rule for {use!r} in {model}")


# -- the schema itself -----------------------------------------------------------------------


def test_the_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_built_in_validator_is_described(schema: dict[str, Any]) -> None:
    # A before-validator the schema does not know leaves its field open to anything.
    assert OPEN_COMMENT not in json.dumps(schema)


# -- what it takes ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path, validator: Draft202012Validator) -> None:
    text = path.read_text(encoding="utf-8")
    assert loader_accepts(text, str(path))
    assert schema_errors(validator, text) == []


def test_the_docs_have_configs_the_loader_accepts() -> None:
    assert len(ACCEPTED_BLOCKS) >= 20


@pytest.mark.parametrize(("name", "text"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_every_doc_config_the_loader_accepts_validates(
    name: str, text: str, validator: Draft202012Validator
) -> None:
    if not loader_accepts(text, name):
        pytest.skip("a fragment the loader rejects")
    assert schema_errors(validator, text) == []


ONE_RUNNER = """\
runners:
  - id: r
    on: {{id: tick, params: {{seconds: 5}}}}
    run: {{id: x, use: ExpressionPipe, params: {{expression: 1}}}}
{rest}"""

ONE = ONE_RUNNER.format(rest="")

SERVICE = """\
services:
  - {id: desk, use: SqliteTicketSystem, params: {path: tickets.sqlite}}
orchestrator:
  runners:
"""

ACCEPTED = {
    "a trigger by its id alone": """\
runners:
  - id: first
    on: [{id: every_2s, params: {seconds: 2}}]
    run: {id: a, use: ExpressionPipe, params: {expression: 1}}
  - id: second
    on: [every_2s]
    run: {id: b, use: ExpressionPipe, params: {expression: 2}}
  - id: third
    on: every_2s
    run: {id: c, use: ExpressionPipe, params: {expression: 3}}
""",
    "one trigger as a mapping, a list of both, none": """\
runners:
  - id: first
    on: {id: tick, use: IntervalTrigger, params: {interval: 1h30m}}
    run: {id: a, use: ExpressionPipe, params: {expression: 1}}
  - id: second
    on: [tick, {id: nightly, use: CronTrigger, params: {cron: "0 3 * * *"}}]
    run: {id: b, use: ExpressionPipe, params: {expression: 2}}
  - id: third
    on:
    run: {id: c, use: ExpressionPipe, params: {expression: 3}}
""",
    "depends_on and retry.on as one string, if and if_": ONE.replace(
        "run: {id: x, use: ExpressionPipe, params: {expression: 1}}",
        """run:
      id: x
      steps:
        - {id: select, use: ExpressionPipe, params: {expression: 1}}
        - id: act
          use: ExpressionPipe
          params: {expression: 2}
          depends_on: select
          if: "{{ pipe_result('select') }}"
          retry: {attempts: 2, on: Failure, delay: 30s, max_delay: PT5M, backoff: 1.5}
        - {id: also, use: ExpressionPipe, params: {expression: 3}, if_: true, timeout: 5m}""",
    ),
    "durations and switches": ONE_RUNNER.format(
        rest="""\
    timeout: 1h30m
    deadline: false
    starting_deadline: PT5M
state_path: false
ledger: false
shutdown_timeout: 500ms
cancel_timeout: 2
watchdog: 0.5
"""
    ),
    "ledger: true": ONE_RUNNER.format(rest="ledger: true\n"),
    "ledger settings": ONE_RUNNER.format(
        rest="ledger: {path: runs.sqlite, retention: 7d, max_runs: 10}\n"
    ),
    "the open_ticket_ai wrapper": "open_ticket_ai:\n  orchestrator:\n"
    + "\n".join("    " + line for line in ONE.splitlines())
    + "\n",
    "an empty wrapper": "open_ticket_ai:\n",
    "params: null, a trigger's use: null": """\
runners:
  - id: r
    on: [{id: tick, use: null, params: {minutes: 1, spread: 30s}}]
    run:
      id: all
      params: null
      steps:
        - {id: a, use: ExpressionPipe, params: {expression: 1}}
""",
    "module:Class, module.Class and an old module name": """\
runners:
  - id: r
    on:
      - id: tick
        use: open_ticket_ai.base.interval_trigger:IntervalTrigger
        params: {seconds: 1, spread: true}
    run:
      id: x
      use: open_ticket_ai.base.pipes.expression_pipe.ExpressionPipe
      params: {expression: 1}
""",
    "templates in params": SERVICE
    + """\
    - id: r
      on: [{id: tick, params: {seconds: "{{ 5 }}"}}]
      run:
        id: all
        steps:
          - id: fetch
            use: FetchTicketsPipe
            params: {ticket_system: desk, limit: "{{ 2 + 3 }}", queue: "{{ 'Inbox' }}"}
          - id: update
            use: UpdateTicketPipe
            for_each: "{{ pipe_result('fetch') }}"
            params:
              ticket_system: desk
              ticket_id: "{{ item.id }}"
              custom_fields: {seen: "{{ now() }}"}
""",
    "what the ticket pipes' validators take": SERVICE
    + """\
    - id: r
      run:
        id: all
        steps:
          - id: update
            use: UpdateTicketPipe
            params: {ticket_system: desk, ticket_id: 42, priority: very high}
          - id: again
            use: UpdateTicketPipe
            params: {ticket_system: desk, ticket_id: {id: 42}, priority: "4"}
          - id: open
            use: CreateTicketPipe
            params: {ticket_system: desk, subject: Hi, queue: Inbox, priority: Very-Low}
""",
    "what HttpRequestPipe's validators take": """\
runners:
  - id: r
    run:
      id: call
      use: HttpRequestPipe
      params:
        url: https://example.org/hook
        method: post
        headers: {X-Count: 3, X-Flag: true}
        expect_status: 204
        timeout: 10s
""",
    "a priority map in words and numbers": """\
services:
  - id: desk
    use: ZammadTicketSystem
    params:
      url: https://helpdesk.example.org
      token: "{{ env.OTAI_ZAMMAD_TOKEN | default('t') }}"
      priority_map: {1: "1 low", normal: "2 normal", very high: "3 high"}
orchestrator:
  runners:
    - id: r
      run: {id: x, use: ExpressionPipe, params: {expression: 1}}
""",
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_every_form_the_loader_widens_validates(text: str, validator: Draft202012Validator) -> None:
    loaded = parse_config(text)
    assert loaded.problems == ()
    if loaded.config.orchestrator.runners:
        build(loaded)  # raises when the form is not really accepted
    assert schema_errors(validator, text) == []


# -- what it rejects -------------------------------------------------------------------------

REJECTED = {
    "a runner without run": "runners:\n  - id: r\n    on: [{id: t, params: {seconds: 1}}]\n",
    "an unknown top-level key": ONE_RUNNER.format(rest="runner_defaults: {overlap: skip}\n"),
    "a key beside open_ticket_ai": "open_ticket_ai: {}\nrunners: []\n",
    "orchestrator settings without runners": "max_concurrent_runs: 2\n",
    "an unknown runner key": ONE_RUNNER.format(rest="    every: 5m\n"),
    "on as a number": ONE.replace("on: {id: tick, params: {seconds: 5}}", "on: 5"),
    "depends_on as a number": ONE.replace("{expression: 1}}", "{expression: 1}, depends_on: 3}"),
    "an unknown overlap": ONE_RUNNER.format(rest="    overlap: sometimes\n"),
    "deadline: true": ONE_RUNNER.format(rest="    deadline: true\n"),
    "a negative timeout": ONE_RUNNER.format(rest="    timeout: -5\n"),
    "an empty state_path": ONE_RUNNER.format(rest='state_path: ""\n'),
    "ledger as text": ONE_RUNNER.format(rest="ledger: sometimes\n"),
    "a misspelt param of a known pipe": ONE.replace("expression: 1", "expresion: 1"),
    "a param of the wrong type": ONE.replace("seconds: 5", "seconds: soon"),
    "a misspelt param of the default trigger": ONE.replace("seconds: 5", "secs: 5"),
    "a missing param of a known trigger": ONE.replace(
        "{id: tick, params: {seconds: 5}}", "{id: tick, use: CronTrigger, params: {}}"
    ),
    "a service without use": "services:\n  - {id: desk}\n",
    "a priority that is none": SERVICE
    + "    - id: r\n      run: {id: u, use: UpdateTicketPipe, params: "
    "{ticket_system: desk, ticket_id: 1, priority: urgent}}\n",
    "an unknown HTTP method": "runners:\n  - id: r\n    run: {id: c, use: HttpRequestPipe, "
    "params: {url: 'https://example.org', method: fetch}}\n",
}


@pytest.mark.parametrize("text", REJECTED.values(), ids=REJECTED.keys())
def test_clearly_wrong_configs_are_rejected(text: str, validator: Draft202012Validator) -> None:
    with pytest.raises(ConfigError):
        build(parse_config(text))
    assert schema_errors(validator, text) != []


# -- completion ------------------------------------------------------------------------------


def test_use_offers_the_components_of_its_kind(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    pipes = offered(defs["PipeConfig"]["properties"]["use"])
    triggers = offered(defs["TriggerDefinition"]["properties"]["use"])
    services = offered(defs["ServiceDefinition"]["properties"]["use"])
    assert {"FetchTicketsPipe", "CompositePipe", "ExpressionPipe"} <= pipes
    assert {"IntervalTrigger", "CronTrigger", "WebhookTrigger"} <= triggers
    assert {"SqliteTicketSystem", "ZnunyTicketSystem", "OtoboTicketSystem"} <= services
    assert pipes.isdisjoint(triggers | services)
    assert triggers.isdisjoint(services)
    registry = Registry()
    assert pipes | triggers | services == set(registry.short_names)
    for names, kind in ((pipes, PipeBase), (triggers, Trigger), (services, Service)):
        for name in names:
            assert issubclass(registry.resolve(name, kind), kind)


def test_use_still_takes_any_string(validator: Draft202012Validator) -> None:
    text = ONE.replace("use: ExpressionPipe", "use: my_plugin:MyPipe")
    assert schema_errors(validator, text) == []


def test_a_known_components_params_have_its_properties(schema: dict[str, Any]) -> None:
    fetch = params_for(schema, "PipeConfig", "FetchTicketsPipe")
    assert {"ticket_system", "queue", "limit"} <= set(fetch["properties"])
    assert fetch["required"] == ["ticket_system"]
    assert fetch["additionalProperties"] is False
    cron = params_for(schema, "TriggerDefinition", "CronTrigger")
    assert {"cron", "timezone"} <= set(cron["properties"])
    desk = params_for(
        schema, "ServiceDefinition", "open_ticket_ai.tickets.adapters.zammad:ZammadTicketSystem"
    )
    assert {"url", "token", "priority_map"} <= set(desk["properties"])


def test_names_come_with_what_the_component_does(schema: dict[str, Any]) -> None:
    use = schema["$defs"]["PipeConfig"]["properties"]["use"]
    fetch = next(option for option in use["anyOf"] if option.get("const") == "FetchTicketsPipe")
    assert fetch["description"].startswith("Searches the ticket system.")


class ShoutParams(ParamsModel):
    text: str
    times: int = 1

    @field_validator("times", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return {"once": 1, "twice": 2}.get(value, value)


class ShoutPipe(Pipe[ShoutParams]):
    """Says the text louder."""

    async def process(self, ctx: PipeContext) -> PipeResult:
        return PipeResult.success({"value": self.params.text.upper() * self.params.times})


def test_a_plugins_component_is_offered_with_its_params() -> None:
    registry = Registry(load_entry_points=False)
    registry.add(ShoutPipe, origin="tests")
    schema = config_schema(registry)
    Draft202012Validator.check_schema(schema)
    assert "ShoutPipe" in offered(schema["$defs"]["PipeConfig"]["properties"]["use"])
    params = params_for(schema, "PipeConfig", "ShoutPipe")
    assert set(params["properties"]) == {"text", "times"}
    # A validator the schema does not know: the field takes anything, and says so.
    assert OPEN_COMMENT in json.dumps(params["properties"]["times"])
    validator = Draft202012Validator(schema)
    good = ONE.replace(
        "use: ExpressionPipe, params: {expression: 1}",
        "use: ShoutPipe, params: {text: hi, times: twice}",
    )
    bad = good.replace("text: hi", "txt: hi")
    assert schema_errors(validator, good) == []
    assert schema_errors(validator, bad) != []
