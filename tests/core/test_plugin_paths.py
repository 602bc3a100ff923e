"""Plugins are found beside the config file and in its ``plugin_paths``, and a module that is
not there is an error that says where it was looked for."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from open_ticket_ai import ConfigError, build
from open_ticket_ai.core.config.loader import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"

CONFIG = """\
open_ticket_ai:
  plugins: [{module}]
  {paths}
  orchestrator:
    runners:
      - id: greeter
        run:
          id: greet
          use: "{module}:GreetingPipe"
          params: {{name: World}}
"""


@pytest.fixture(autouse=True)
def _forget_modules() -> None:
    for name in [n for n in sys.modules if n.startswith("greeting_")]:
        del sys.modules[name]


def test_a_plugin_beside_the_config_is_found_without_any_path_set(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "greeting.py", tmp_path / "greeting_beside.py")
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(module="greeting_beside", paths=""))
    before = list(sys.path)
    compiled = build(load_config(str(config)))
    assert compiled.runners[0].pipeline.pipe_class.__name__ == "GreetingPipe"
    assert sys.path == before  # only while the config builds


def test_plugin_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    shutil.copy(EXAMPLES / "greeting.py", tmp_path / "lib" / "greeting_lib.py")
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "config.yml"
    config.write_text(CONFIG.format(module="greeting_lib", paths="plugin_paths: [../lib]"))
    compiled = build(load_config(str(config)))
    assert compiled.runners[0].pipeline.pipe_class.__name__ == "GreetingPipe"


def test_a_missing_plugin_says_where_it_was_looked_for(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        CONFIG.format(module="greeting_nowhere", paths="plugin_paths: [lib, missing]")
    )
    (tmp_path / "lib").mkdir()
    with pytest.raises(ConfigError) as caught:
        build(load_config(str(config)))
    found = [str(p) for p in caught.value.problems]
    assert any("plugin_paths[1]: no directory" in p for p in found)
    [plugin] = [p for p in found if "plugins[0]" in p]
    assert "no module 'greeting_nowhere'" in plugin
    assert str(tmp_path / "lib") in plugin
    assert "put greeting_nowhere.py there or list its directory under plugin_paths" in plugin
