"""Is the ``otai run`` of a config alive? Exit 0 when it is, 1 when not (a container check).

Usage:  python healthcheck.py [CONFIG]   (default: $OTAI_CONFIG, else ./config.yml)

The config decides how to ask, as the service reads it:

- with ``orchestrator.http`` set, the listener is on: ``GET /livez`` on it must answer 200
  within the timeout (it answers while the event loop serves, and never asks a helpdesk);
- without it, ``otai status --json CONFIG`` is asked, and the instance must be reported
  running: its state file is held by a live ``otai run`` (or a listener the config's
  webhook triggers opened answers). With ``state_path: false`` and no listener there is
  nothing outside the process to ask: the check says so and passes, leaving it to the
  process supervisor to notice a process that ended.

The Dockerfile's HEALTHCHECK runs this; nothing here is part of the ``otai`` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

from open_ticket_ai.cli.trigger import local_url
from open_ticket_ai.core.config.loader import load_config
from open_ticket_ai.errors import OpenTicketAIError

TIMEOUT = 5.0


def _livez(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"{url}/livez", timeout=TIMEOUT) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return False, f"{url}/livez did not answer: {exc}"
    return status == 200, f"{url}/livez answered {status}"


def _status(config: str) -> tuple[bool, str]:
    otai = "from open_ticket_ai.cli.main import main; main()"
    command = [sys.executable, "-c", otai, "status", "--json", config]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT * 4)
    except subprocess.TimeoutExpired:
        return False, "otai status did not answer in time"
    if done.returncode != 0:
        return False, f"otai status failed ({done.returncode}): {done.stderr.strip()}"
    try:
        sources = json.loads(done.stdout)["sources"]
        instance = next(line for line in sources if line.startswith("instance: "))
    except (ValueError, KeyError, TypeError, StopIteration):
        return False, f"otai status printed no instance line: {done.stdout[:200]!r}"
    if instance.startswith("instance: running"):
        return True, instance
    if instance == "instance: not reachable (no listener)":
        return True, f"{instance}, and no state file: nothing to ask, passing"
    return False, instance


def check(config: str) -> tuple[bool, str]:
    try:
        settings = load_config(config).config.orchestrator.http
    except OpenTicketAIError as exc:
        return False, f"cannot read {config}: {exc}"
    url = local_url(settings) if settings is not None else None
    if url is not None:
        return _livez(url)
    return _status(config)


def main() -> None:
    config = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OTAI_CONFIG", "config.yml")
    healthy, reason = check(config)
    print(f"{'healthy' if healthy else 'unhealthy'}: {reason}")
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
