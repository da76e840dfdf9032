"""`python -m engine new`: every kind validates and passes its own tests at once; nothing is
ever overwritten; a name the spec refuses is refused before anything is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator

from engine.cli import main
from engine.loader.yaml_marks import parse
from engine.new_bot import KIND_VARIABLES, KINDS, access_key_variable
from engine.schema import SCHEMA_PATH

NAME = "new-bot.1"
KEY_VARIABLE = "NEW_BOT_1_ACCESS_KEY"
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\n")
OTHER_VARIABLES = [name for variables in KIND_VARIABLES.values() for name in variables]


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (KEY_VARIABLE, *OTHER_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_passes_validate_and_its_tests_at_once(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bots"
    created = run("new", NAME, "--kind", kind, "--bots", str(folder))
    assert created.exit_code == 0, created.output
    path = folder / f"{NAME}.yaml"
    assert f"wrote {path}, a {kind} bot" in created.output
    text = path.read_text(encoding="utf-8")
    assert f"access_key: ${{{KEY_VARIABLE}}}\n" in text
    assert "\ntests:\n" in text

    # The only warnings are of the variables not set yet, each one a step `new` printed.
    checked = run("validate", str(folder))
    assert checked.exit_code == 0, checked.output
    variables = (KEY_VARIABLE, *KIND_VARIABLES.get(kind, {}))
    for line in (line for line in checked.output.splitlines() if ": warning: " in line):
        named = [name for name in variables if f"{name} is not set" in line]
        assert named, line
        assert f"Set {named[0]} in .env" in created.output

    monkeypatch.setenv(KEY_VARIABLE, "K" * 32)
    for variable in KIND_VARIABLES.get(kind, {}):
        monkeypatch.setenv(variable, "set-" + "s" * 32)
    quiet = run("validate", str(folder))
    assert quiet.output.splitlines()[-1] == "1 file: 0 errors, 0 warnings"

    tested = run("test", str(folder))
    assert tested.exit_code == 0, tested.output
    assert re.search(r"^[1-9]\d* passed, 0 failed$", tested.output, re.M), tested.output
    assert f"python -m engine chat {NAME} --bots {folder}" in created.output


@pytest.mark.parametrize("kind", KINDS)
def test_the_schema_line_points_at_schema_json_which_accepts_the_file(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an editor reads it: the path is relative to the file's folder."""
    monkeypatch.chdir(SCHEMA_PATH.parent)
    folder = tmp_path / "deep" / "bots"
    assert run("new", "b", "--kind", kind, "--bots", str(folder)).exit_code == 0
    text = (folder / "b.yaml").read_text(encoding="utf-8")
    found = SCHEMA_LINE.match(text)
    assert found is not None
    assert (folder / found.group(1)).resolve() == SCHEMA_PATH
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = list(Draft202012Validator(schema).iter_errors(parse(text).data))
    assert errors == []


def test_in_bots_of_the_repository_the_schema_line_is_the_examples_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    repo_bots = SCHEMA_PATH.parent / "bots"
    from engine.new_bot import render

    assert render("x", "rules", repo_bots).startswith(
        "# yaml-language-server: $schema=../schema.json\n"
    )


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "bots"
    folder.mkdir()
    (folder / "taken.yaml").write_text("mine\n", encoding="utf-8")
    (folder / "other.yml").write_text("mine too\n", encoding="utf-8")
    for name in ("taken", "other"):
        result = run("new", name, "--bots", str(folder))
        assert result.exit_code == 1
        assert "already exists; nothing was written" in result.stderr
    assert (folder / "taken.yaml").read_text(encoding="utf-8") == "mine\n"
    assert not (folder / "other.yaml").exists()


def test_the_second_new_of_a_name_is_refused(tmp_path: Path) -> None:
    folder = str(tmp_path / "bots")
    assert run("new", "twice", "--bots", folder).exit_code == 0
    first = (tmp_path / "bots" / "twice.yaml").read_text(encoding="utf-8")
    again = run("new", "twice", "--kind", "model", "--bots", folder)
    assert again.exit_code == 1
    assert (tmp_path / "bots" / "twice.yaml").read_text(encoding="utf-8") == first


@pytest.mark.parametrize("name", ["../escape", "-dash", "has space", "a" * 65, "é", ".hidden", ""])
def test_a_name_the_spec_refuses_writes_nothing(name: str, tmp_path: Path) -> None:
    result = run("new", "--bots", str(tmp_path / "bots"), "--", name)
    assert result.exit_code == 1
    assert f"error: {name!r} is not a valid bot name" in result.stderr
    assert not (tmp_path / "bots").exists()
    assert not list(tmp_path.rglob("*.yaml"))


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("hello", "HELLO_ACCESS_KEY"),
        ("acme.help-2", "ACME_HELP_2_ACCESS_KEY"),
        ("9a", "BOT_9A_ACCESS_KEY"),
    ],
)
def test_access_key_variables_are_valid_environment_names(name: str, variable: str) -> None:
    assert access_key_variable(name) == variable
