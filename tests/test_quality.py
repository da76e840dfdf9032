"""The code's own checks run with the suite, so CI refuses what `make check` would."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

SOURCES = ["engine", "tests", "bench", "app.py"]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *SOURCES],
        ["ruff", "format", "--check", *SOURCES],
        ["mypy"],  # strict, over engine/ and bench/ (pyproject.toml)
    ],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_the_code_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
