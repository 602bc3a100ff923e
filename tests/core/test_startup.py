"""Start-up as `otai run` does it: load and build with the collector paused, keep only what
runs."""

from __future__ import annotations

import asyncio
import gc
import textwrap

from open_ticket_ai import build, parse_config
from open_ticket_ai.runtime.startup import prepare

CONFIG = textwrap.dedent(
    """
    orchestrator:
      shutdown_timeout: 7s
      max_concurrent_runs: 2
      runners:
        - id: a
          run: {id: p, use: ExpressionPipe, params: {expression: "{{ 6 * 7 }}"}}
    """
)


def test_without_load_state_keeps_what_runs_and_drops_the_rest() -> None:
    compiled = build(parse_config(CONFIG, "c.yml"))
    light = compiled.without_load_state()
    assert [r.id for r in light.runners] == ["a"]
    assert light.runners[0].pipeline is compiled.runners[0].pipeline
    assert light.loaded.config.orchestrator.shutdown_timeout == 7.0
    assert light.loaded.config.orchestrator.max_concurrent_runs == 2
    assert light.loaded.config.orchestrator.runners == []
    assert light.loaded.source.values == {}
    assert light.loaded.source.file == "c.yml"
    assert compiled.loaded.source.values  # the original is untouched


def test_prepared_orchestrator_runs() -> None:
    try:
        orchestrator = prepare(lambda: parse_config(CONFIG, "c.yml"))
        assert gc.get_freeze_count() > 0  # what start-up built is out of the collector's sight
        result = asyncio.run(orchestrator.run_once("a"))
    finally:
        gc.unfreeze()  # the test process is not a long-running service
    assert result.succeeded
    assert result.data == {"value": 42}
    assert orchestrator.shutdown_timeout == 7.0
