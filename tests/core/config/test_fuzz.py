"""Any text fed to the config loader either loads or fails with a ConfigError, never a traceback.

Three sources of input: random text, mutations of valid configs (deleted and duplicated lines,
swapped characters, random keys and values), and random YAML documents built from the config's
own vocabulary so that they get past the YAML parser and into validation and building.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from open_ticket_ai.core.config import parse_config
from open_ticket_ai.core.factory import CompiledConfig, build
from open_ticket_ai.core.registry import Registry
from open_ticket_ai.errors import ConfigError

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

VALID_CONFIGS = [
    """\
orchestrator:
  runners:
    - id: periodic_classifier
      on:
        - id: "every_5_minutes"
          use: "open_ticket_ai.base.interval_trigger:IntervalTrigger"
          params:
            milliseconds: 300000
      run:
        id: ticket_classifier
        use: open_ticket_ai.base:CompositePipe
        steps:
          - id: fetch
            use: HttpRequestPipe
            params:
              url: "https://example.com/{{ env.OTAI_PATH | default('x') }}"
              timeout: 5s
            retry: {attempts: 2, delay: 500ms}
          - id: count
            use: ExpressionPipe
            depends_on: fetch
            if: "{{ has_failed('fetch') }}"
            params:
              expression: "{{ 6 * 7 }}"
""",
    """\
open_ticket_ai:
  plugins: []
  orchestrator:
    max_concurrent_runs: 4
    shutdown_timeout: PT30S
    runners:
      - id: startup_task
        run:
          id: initialization
          use: ExpressionPipe
          params: {expression: 1}
      - id: hourly
        on:
          - id: hourly
            params: {interval: 1h}
        run:
          id: maintenance
          timeout: 5m
          steps:
            - id: a
              use: ExpressionPipe
              params: {expression: "{{ 1 }}"}
""",
    """\
runners:
  - id: quick_check
    on:
      - id: "every_minute"
        params:
          milliseconds: 60000
    run:
      id: check
      use: ExpressionPipe
      params: {expression: yes}
  - id: deep_scan
    on: [every_minute]
    run:
      id: scan
      use: CompositePipe
      steps: []
""",
]

KEYS = [
    "open_ticket_ai",
    "orchestrator",
    "runners",
    "plugins",
    "services",
    "env_allowlist",
    "max_concurrent_runs",
    "shutdown_timeout",
    "id",
    "on",
    "run",
    "use",
    "params",
    "steps",
    "if",
    "depends_on",
    "retry",
    "timeout",
    "attempts",
    "delay",
    "backoff",
    "max_delay",
    "milliseconds",
    "seconds",
    "interval",
    "run_on_start",
    "expression",
    "url",
    "method",
    "json",
    "<<",
]

# A small alphabet: enough for YAML and Jinja syntax, too small to spell a real module name
# that does something on import (random `use:` and `plugins:` values are imported).
ALPHABET = "abxz01_.:-{}[]%#'\" |&*!?,\n"

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ALPHABET, max_size=12),
    st.sampled_from(
        [
            "CompositePipe",
            "ExpressionPipe",
            "HttpRequestPipe",
            "IntervalTrigger",
            "open_ticket_ai.base:CompositePipe",
            "open_ticket_ai.base.interval_trigger:IntervalTrigger",
            "open_ticket_ai.core.pipes.pipe:Pipe",
            "open_ticket_ai.core.triggers.base:Trigger",
            "open_ticket_ai.core.services:Service",
            "os:path",
            "30s",
            "PT5M",
            "1h30m",
            "0",
            "-1",
            "https://example.com",
            "{{ x }}",
            "{{ 1 +",
            "{% if %}",
            "{# c #}{{ 1 }}",
            "{{ env.HOME }}",
            "2020-13-01",
        ]
    ),
)

# Values as written in YAML, which a dump of Python values would quote or never produce.
RAW_VALUES = [
    "2020-13-01",
    "2020-02-30 25:61:00",
    "!!int x",
    "!!float x",
    "!!binary x",
    "!!python/object:os.system x",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "&a [*a]",
    "&b {k: *b}",
    "*undefined",
    "{<<: 1}",
    "9" * 5000,
    "9" * 400,
    ".inf",
    "-.inf",
    ".nan",
    "~",
    "{",
    "[",
    "|",
    ">-",
    "'",
    '"\\x"',
    "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
    "{{ x }}",
    "'{{ x '",
    '"{% for %}"',
    "[a, [b, [c]]]",
    "\t1",
]

DOCUMENTS: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(KEYS) | st.text(ALPHABET, max_size=6), children, max_size=5
        ),
    ),
    max_leaves=30,
)


def load_or_config_error(text: str) -> None:
    """The property: a CompiledConfig, or a ConfigError whose problems all say where."""
    try:
        compiled = build(parse_config(text, "config.yml"), Registry())
    except ConfigError as exc:
        error = exc
    else:
        assert isinstance(compiled, CompiledConfig)
        return
    assert error.problems
    # YAML (and LibYAML's line numbers) also break lines at \r, NEL and the Unicode separators.
    last_line = len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text)) + 1
    for problem in error.problems:
        assert problem.file == "config.yml"
        assert problem.message
        assert problem.line is None or 1 <= problem.line <= last_line, problem
    assert str(error).startswith(f"{len(error.problems)} problem")


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID_CONFIGS))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        kind = draw(
            st.sampled_from(["delete", "duplicate", "swap", "char", "key", "value", "text"])
        )
        if kind == "delete":
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif kind == "duplicate":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
        elif kind in ("key", "value"):
            i = draw(st.integers(0, len(lines) - 1))
            indent = len(lines[i]) - len(lines[i].lstrip(" "))
            indent = draw(st.sampled_from([indent, indent + 2, max(indent - 2, 0)]))
            value = draw(
                st.sampled_from(RAW_VALUES)
                | SCALARS.map(lambda v: yaml.safe_dump(v, default_flow_style=True).split("\n")[0])
            )
            if kind == "key":
                key = draw(st.sampled_from(KEYS) | st.text(ALPHABET, min_size=1, max_size=6))
                lines.insert(i, " " * indent + f"{key}: {value}")
            elif ":" in lines[i]:
                head = lines[i].split(":", 1)[0]
                lines[i] = f"{head}: {value}"
        if kind in ("swap", "char", "text"):
            text = "\n".join(lines)
            if not text:
                continue
            i = draw(st.integers(0, len(text) - 1))
            if kind == "swap" and i + 1 < len(text):
                text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
            elif kind == "char":
                text = text[:i] + draw(st.characters()) + text[i + 1 :]
            else:
                text = text[:i] + draw(st.text(ALPHABET, max_size=8)) + text[i:]
        else:
            text = "\n".join(lines)
    return text


def test_the_valid_configs_load() -> None:
    # Without this the mutations below would start from configs that never loaded.
    for text in VALID_CONFIGS:
        compiled = build(parse_config(text), Registry())
        assert compiled.runners


@FUZZ
@given(st.text())
def test_random_text_loads_or_raises_config_error(text: str) -> None:
    load_or_config_error(text)


@FUZZ
@given(st.text(ALPHABET + "abcdefghijklmnopqrstuvwxyz  \t", max_size=200))
def test_yaml_like_text_loads_or_raises_config_error(text: str) -> None:
    load_or_config_error(text)


@FUZZ
@given(mutated_configs())
def test_mutated_configs_load_or_raise_config_error(text: str) -> None:
    load_or_config_error(text)


@FUZZ
@given(DOCUMENTS, st.sampled_from(["bare", "orchestrator", "wrapped", "as is"]))
def test_random_documents_load_or_raise_config_error(document: Any, form: str) -> None:
    if form == "bare":
        document = {"runners": document}
    elif form == "orchestrator":
        document = {"orchestrator": {"runners": document}}
    elif form == "wrapped":
        document = {"open_ticket_ai": {"orchestrator": {"runners": document}}}
    load_or_config_error(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries(
            {"id": st.sampled_from(["a", "b", "c", "a "])},
            optional={
                "use": st.sampled_from(["ExpressionPipe", "CompositePipe", "IntervalTrigger"]),
                "depends_on": st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3),
                "params": st.just({"expression": 1}),
                "if": st.sampled_from(["{{ true }}", "{{", True]),
            },
        ),
        max_size=4,
    ),
    st.lists(
        st.fixed_dictionaries(
            {"id": st.sampled_from(["t1", "t2"])},
            optional={"params": st.sampled_from([{"seconds": 1}, {"seconds": 2}, {}])},
        ),
        max_size=3,
    ),
)
def test_random_pipelines_load_or_raise_config_error(
    steps: list[dict[str, Any]], triggers: list[dict[str, Any]]
) -> None:
    # Near-valid pipelines reach the checks on ids, depends_on, cycles and shared triggers.
    document = {
        "runners": [
            {"id": "r1", "on": triggers, "run": {"id": "root", "steps": steps}},
            {"id": "r2", "on": [t["id"] for t in triggers], "run": {"id": "x", "steps": steps}},
        ]
    }
    load_or_config_error(yaml.safe_dump(document))
