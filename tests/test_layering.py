"""The core (loader, runtime, protocol) never pulls in the web stack or the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO

CORE = ("engine.runtime", "engine.loader", "engine.protocol.sse")
FORBIDDEN = ("flask", "werkzeug", "click", "gunicorn")

PROBE = f"""
import json, sys
for name in {CORE!r}:
    __import__(name)
print(json.dumps(sorted(
    name for name in sys.modules
    if name.split(".")[0] in {FORBIDDEN!r}
)))
"""


def _imported_after(code: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: list[str] = json.loads(completed.stdout)
    return result


def test_the_core_imports_no_web_or_cli_module() -> None:
    assert _imported_after(PROBE) == []


def test_the_probe_would_see_a_forbidden_import() -> None:
    assert "click" in _imported_after(PROBE.replace("import json, sys", "import json, sys, click"))
