"""Every example bot loads cleanly and its own declared tests pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.loader import load_paths
from engine.settings import Settings
from engine.testing import run_bot_tests

from .conftest import BOTS_DIR, EXAMPLE_BOTS, REPO

BOT_FILES = sorted(BOTS_DIR.glob("*.yaml"))


def test_the_example_bots_are_all_there() -> None:
    assert [path.stem for path in BOT_FILES] == sorted(EXAMPLE_BOTS)
    assert all((REPO / "bots" / path.name).read_text() == path.read_text() for path in BOT_FILES)


@pytest.mark.parametrize("path", BOT_FILES, ids=lambda p: p.name)
def test_bot_loads_and_its_tests_pass(path: Path) -> None:
    report = load_paths([path], env={})
    assert report.errors == []
    (bot,) = report.bots.values()
    assert bot.spec.tests, f"{path.name} declares no tests"
    failures = [(r.name, r.failures) for r in run_bot_tests(bot) if not r.passed]
    assert failures == []


@pytest.mark.parametrize("path", BOT_FILES, ids=lambda p: p.name)
def test_bot_starts_with_the_schema_comment(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schema.json"


@pytest.mark.parametrize("path", BOT_FILES, ids=lambda p: p.name)
def test_bot_declares_its_access_key_as_an_env_reference(path: Path) -> None:
    report = load_paths([path], env={})
    (bot,) = report.bots.values()
    assert bot.access_key_var is not None
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    assert f"\n{bot.access_key_var}=" in example


@pytest.mark.parametrize("setting", sorted(Settings.model_fields), ids=str)
def test_every_server_setting_is_documented(setting: str) -> None:
    """In the README's table and in .env.example, under its environment variable's name."""
    variable = setting.upper()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    assert f"`{variable}`" in readme
    assert re.search(rf"^(# )?{variable}=", example, re.MULTILINE)
