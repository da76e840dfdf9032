"""The core (loader, runtime, protocol) never pulls in the web stack or the CLI."""

from __future__ import annotations

import json

from .conftest import run_python

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
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    result: list[str] = json.loads(completed.stdout)
    return result


def test_the_core_imports_no_web_or_cli_module() -> None:
    assert _imported_after(PROBE) == []


def test_the_probe_would_see_a_forbidden_import() -> None:
    assert "click" in _imported_after(PROBE.replace("import json, sys", "import json, sys, click"))
