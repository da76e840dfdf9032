"""One YAML reading everywhere: libyaml, or the engine refuses to start.

PyYAML's pure-Python parser is simulated the way a PyYAML built without libyaml looks: its
C extension cannot be imported, so `yaml.CSafeLoader` does not exist.
"""

from __future__ import annotations

import subprocess
import sys

import yaml

from engine.loader import load_text
from engine.loader.yaml_marks import LIBYAML_MISSING, parse

from .conftest import BOTS_DIR, EXAMPLE_BOTS, EXAMPLE_ENV, REPO

# Run before anything imports yaml: PyYAML then finds no libyaml, as when built without it.
WITHOUT_LIBYAML = "import sys; sys.modules['yaml._yaml'] = sys.modules['_yaml'] = None\n"


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_LIBYAML + code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_simulation_really_removes_libyaml() -> None:
    """Else the tests below would prove nothing: PyYAML itself must report no libyaml."""
    result = _run("import yaml; print(yaml.__with_libyaml__, hasattr(yaml, 'CSafeLoader'))")
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_the_command_line_stops_with_the_remedy_and_no_traceback() -> None:
    code = "import runpy; runpy.run_module('engine', run_name='__main__', alter_sys=True)"
    result = _run(code, "validate", str(BOTS_DIR))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {LIBYAML_MISSING}"
    assert "pip install --force-reinstall" in result.stderr


def test_the_server_cannot_be_built_on_the_pure_parser() -> None:
    """app.py imports engine.web: the same error, never a bot read the other way."""
    code = (
        "from engine.errors import LibyamlMissing\n"
        "try:\n    import engine.web\n"
        "except LibyamlMissing as exc:\n    print('refused:', exc)\n"
    )
    result = _run(code)
    assert result.stdout.strip() == f"refused: {LIBYAML_MISSING}", result.stderr


def test_acme_help_reads_as_editors_read_it() -> None:
    """The list the pure parser rejected: plain scalars with `?` inside brackets."""
    text = (BOTS_DIR / "acme-help.yaml").read_text(encoding="utf-8")
    bot, problems = load_text(text, "acme-help.yaml", EXAMPLE_ENV)
    assert bot is not None and problems == []
    assert bot.spec.suggested_replies == [
        "How long is shipping?",
        "I want a refund",
        "Talk to a human",
    ]


def test_every_example_reads_as_libyaml_reads_it() -> None:
    for name in EXAMPLE_BOTS:
        text = (BOTS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        assert parse(text).data == yaml.load(text, Loader=yaml.CSafeLoader), name
