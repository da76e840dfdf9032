"""A creator's own bot in bots/ never makes the engine's test suite fail.

What a bot file needs (its variables, its own tests) is for `python -m engine validate`
and `test` to report; this suite tests the engine and its example bots only. Proved by
running the tests that read the example folder in a copy of the repository whose bots/
holds one more bot, with a key variable that `.env.example` does not list.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

USER_BOT = """\
# yaml-language-server: $schema=../schema.json
access_key: ${TRIP_HELPER_ACCESS_KEY}
greeting: I plan trips.
model: {provider: openai, name: gpt-4o-mini, api_key: "${TRIP_HELPER_OPENAI_KEY}"}
routes:
  - if: "regex(message, '(?i)visa')"
    reply: Ask your embassy.
  - llm: {system: "You plan trips."}
"""
# Every test module that reads the example bots or the files that describe them.
READERS = ["test_bots.py", "test_schema.py", "test_cli.py", "test_web.py", "test_golden.py"]


@pytest.mark.timeout(300)
def test_the_suite_passes_with_a_users_bot_in_bots(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(REPO, copy, ignore=ignore)
    (copy / "bots" / "trip-helper.yaml").write_text(USER_BOT, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        + [f"tests/{name}" for name in READERS],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
