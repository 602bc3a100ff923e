"""Heavy libraries load only when a model does, never when the package is imported."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "scipy", "numpy", "joblib", "torch", "transformers")


def test_importing_the_packages_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import open_ticket_ai, open_ticket_ai.classification, open_ticket_ai.demo\n"
        "import open_ticket_ai.cli.train\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
