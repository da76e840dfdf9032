"""`python -m engine validate | test | schema`, driven through click's CliRunner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import engine
from engine import schema
from engine.cli import main

from .conftest import BOTS_DIR, EXAMPLE_ENV, KEY, REPO

Folder = Callable[[dict[str, str]], Path]

CLEAN = """\
    routes:
      - if: "regex(message, '(?i)^hi')"
        reply: "Hello {{ message }}"
      - reply: fallback
    """
WARNING_ONLY = """\
    access_key: ${CLI_TEST_UNSET_KEY}
    routes:
      - if: message
        reply: x
    """
BROKEN = """\
    nmae: x
    routes:
      - reply: '{{ mesage }}'
    """
UNREACHABLE = """\
    routes:
      - reply: a
      - reply: b
    """
TESTED = """\
    routes:
      - reply: "Hello {{ message }}"
        suggest: [More]
    tests:
      - name: greets
        say: hi
        expect: {equals: Hello hi, suggested: [More]}
      - name: wrong
        say: hi
        expect: {contains: Bye, error: true}
      - turns:
          - say: a
            expect: {equals: Hello a}
          - say: b
            expect: {equals: Hello c}
    """
PASSING = """\
    routes:
      - reply: ok
    tests:
      - say: anything
        expect: {equals: ok}
    """


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLI_TEST_UNSET_KEY", raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


# --- validate ----------------------------------------------------------------------------


def test_validate_clean_files_exits_0(bots_dir: Folder) -> None:
    folder = bots_dir({"a.yaml": CLEAN, "b.yml": CLEAN})
    result = run("validate", str(folder))
    assert (result.exit_code, result.stdout) == (0, "2 files: 0 errors, 0 warnings\n")


def test_validate_a_single_file(bots_dir: Folder) -> None:
    folder = bots_dir({"a.yaml": CLEAN})
    result = run("validate", str(folder / "a.yaml"))
    assert (result.exit_code, lines(result)) == (0, ["1 file: 0 errors, 0 warnings"])


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"], ["-j", "3"]])
def test_validate_prints_every_problem_sorted_and_exits_1(
    bots_dir: Folder, jobs: list[str]
) -> None:
    folder = bots_dir({"c.yaml": UNREACHABLE, "a.yaml": BROKEN, "b.yaml": WARNING_ONLY})
    a, b, c = (folder / name for name in ("a.yaml", "b.yaml", "c.yaml"))
    result = run("validate", *jobs, str(folder))
    assert result.exit_code == 1
    assert lines(result) == [
        f"{a}:1:1: nmae: unknown key 'nmae' (did you mean 'name'?)",
        f"{a}:3:16: routes[0].reply: unknown variable 'mesage' (did you mean 'message'?)",
        "    {{ mesage }}",
        "       ^",
        f"{b}:1:13: warning: access_key: environment variable CLI_TEST_UNSET_KEY is not set "
        "(without a key the bot is served only on a loopback address)",
        f"{b}:2:1: warning: routes: no fallback route: a message that matches no `if` gets an "
        "error (add a last route without `if`)",
        f"{c}:3:5: routes[1]: this route is never reached: routes[0] has no `if` and answers "
        "every message (move the fallback route last)",
        "3 files: 3 errors, 2 warnings",
    ]


def test_validate_with_only_warnings_exits_0(bots_dir: Folder) -> None:
    folder = bots_dir({"w.yaml": WARNING_ONLY})
    result = run("validate", str(folder))
    assert result.exit_code == 0
    assert lines(result)[-1] == "1 file: 0 errors, 2 warnings"
    assert all(": warning: " in line for line in lines(result)[:-1])


def test_validate_reads_the_access_key_from_the_environment(
    bots_dir: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = bots_dir({"w.yaml": WARNING_ONLY})
    monkeypatch.setenv("CLI_TEST_UNSET_KEY", "s" * 32)
    assert lines(run("validate", str(folder)))[-1] == "1 file: 0 errors, 1 warning"


def test_validate_several_paths(bots_dir: Folder, tmp_path: Path) -> None:
    folder = bots_dir({"a.yaml": CLEAN})
    single = tmp_path / "single.yaml"
    single.write_text("routes: [\n", encoding="utf-8")
    result = run("validate", str(folder), str(single))
    assert result.exit_code == 1
    assert lines(result) == [
        f"{single}:2:1: invalid YAML: did not find expected node content",
        "2 files: 1 error, 0 warnings",
    ]


def test_validate_defaults_to_the_bots_folder(
    bots_dir: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = bots_dir({"a.yaml": CLEAN, "b.yaml": CLEAN, "c.yaml": CLEAN})
    monkeypatch.chdir(folder.parent)
    result = run("validate")
    assert (result.exit_code, lines(result)) == (0, ["3 files: 0 errors, 0 warnings"])


def test_validate_the_example_bots(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(variable, value)
    result = run("validate", str(BOTS_DIR))
    count = len(list(BOTS_DIR.glob("*.yaml")))
    assert (result.exit_code, lines(result)) == (0, [f"{count} files: 0 errors, 0 warnings"])


@pytest.mark.parametrize("command", ["validate", "test"])
def test_a_missing_path_is_a_usage_error(command: str, bots_dir: Folder) -> None:
    folder = bots_dir({"a.yaml": CLEAN})
    result = run(command, str(folder), "no/such/place", "nope.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: no such file or folder: no/such/place, nope.yaml" in result.stderr
    assert f"Usage: main {command} [OPTIONS] [PATHS]..." in result.stderr


# --- test --------------------------------------------------------------------------------


def test_test_prints_pass_and_fail_lines_and_exits_1(bots_dir: Folder) -> None:
    folder = bots_dir({"t.yaml": TESTED})
    shown = folder / "t.yaml"
    result = run("test", str(folder))
    assert result.exit_code == 1
    assert lines(result) == [
        f"PASS {shown}::greets",
        f"FAIL {shown}::wrong",
        "    expected the answer to contain 'Bye'; got 'Hello hi'",
        "    expected an error; the bot answered normally",
        f"FAIL {shown}::test 3",
        "    turn 2: expected the answer 'Hello c'; got 'Hello b'",
        "1 passed, 2 failed",
    ]


def test_test_exits_0_when_every_test_passes(bots_dir: Folder) -> None:
    folder = bots_dir({"p.yaml": PASSING, "untested.yaml": CLEAN, "also.yaml": CLEAN})
    result = run("test", str(folder))
    assert (result.exit_code, lines(result)) == (
        0,
        [
            f"PASS {folder / 'p.yaml'}::test 1",
            "no tests declared for: also, untested",
            "1 passed, 0 failed",
        ],
    )


def test_test_refuses_to_run_with_spec_errors(bots_dir: Folder) -> None:
    folder = bots_dir({"p.yaml": PASSING, "x.yaml": UNREACHABLE})
    result = run("test", str(folder))
    assert result.exit_code == 1
    assert lines(result) == [
        f"{folder / 'x.yaml'}:3:5: routes[1]: this route is never reached: routes[0] has no "
        "`if` and answers every message (move the fallback route last)",
        "cannot run tests: 1 error in the bot files",
    ]


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_test_the_example_bots(jobs: list[str]) -> None:
    result = run("test", *jobs, str(BOTS_DIR))
    assert result.exit_code == 0, result.stdout
    assert lines(result)[-1].endswith(" passed, 0 failed")
    assert not any(line.startswith("FAIL") for line in lines(result))


def test_jobs_must_be_positive() -> None:
    result = run("validate", "--jobs", "0", str(BOTS_DIR))
    assert result.exit_code == 2
    assert "Invalid value for '--jobs' / '-j': 0 is not in the range x>=1." in result.output


# --- schema ------------------------------------------------------------------------------


def test_schema_check_passes_when_current() -> None:
    result = run("schema", "--check")
    assert (result.exit_code, result.stdout) == (
        0,
        "schema.json and canvas.schema.json are up to date\n",
    )


def test_schema_check_fails_when_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    files = ((schema.SCHEMA_PATH, dict), (schema.CANVAS_SCHEMA_PATH, schema.build_canvas_schema))
    monkeypatch.setattr(schema, "FILES", files)
    result = run("schema", "--check")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "schema.json is out of date; run `python -m engine schema`\n"


def test_schema_check_names_a_stale_canvas_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    files = ((schema.SCHEMA_PATH, schema.build_schema), (schema.CANVAS_SCHEMA_PATH, dict))
    monkeypatch.setattr(schema, "FILES", files)
    result = run("schema", "--check")
    assert result.exit_code == 1
    assert result.stderr == "canvas.schema.json is out of date; run `python -m engine schema`\n"


def test_schema_writes_both_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bots, canvas = tmp_path / "schema.json", tmp_path / "canvas.schema.json"
    files = ((bots, schema.build_schema), (canvas, schema.build_canvas_schema))
    monkeypatch.setattr(schema, "FILES", files)
    result = run("schema")
    assert (result.exit_code, result.stdout) == (0, f"wrote {bots}\nwrote {canvas}\n")
    assert schema.is_current(bots)
    assert schema.is_current(canvas, schema.build_canvas_schema)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert engine.__version__ in result.stdout


# --- .env ------------------------------------------------------------------------------

KEYED = "access_key: ${DOTENV_TEST_ACCESS_KEY}\nroutes: [{reply: hi}]\n"


def engine_in(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m engine ARGS` as a user runs it, in `folder`, the test's keys unset."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOTENV_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=folder,
        env=clean | {"PYTHONPATH": str(REPO)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dotenv_folder(tmp_path: Path, dotenv: str) -> Path:
    (tmp_path / "bots").mkdir()
    (tmp_path / "bots" / "keyed.yaml").write_text(KEYED, encoding="utf-8")
    (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    return tmp_path


def test_validate_reads_the_key_from_dotenv(tmp_path: Path) -> None:
    folder = dotenv_folder(tmp_path, f"# copied from .env.example\nDOTENV_TEST_ACCESS_KEY={KEY}\n")
    result = engine_in(folder, "validate")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "1 file: 0 errors, 0 warnings\n",
        "",
    )


def test_a_variable_already_set_wins_over_dotenv(tmp_path: Path) -> None:
    folder = dotenv_folder(tmp_path, f"DOTENV_TEST_ACCESS_KEY={KEY}\n")
    result = engine_in(folder, "validate", DOTENV_TEST_ACCESS_KEY="short")
    assert "DOTENV_TEST_ACCESS_KEY holds a 5-character key" in result.stdout
    assert result.stdout.endswith("1 file: 0 errors, 1 warning\n")


def test_an_unreadable_dotenv_line_is_a_warning_naming_it(tmp_path: Path) -> None:
    folder = dotenv_folder(tmp_path, f"this line is no assignment\nDOTENV_TEST_ACCESS_KEY={KEY}\n")
    result = engine_in(folder, "validate")
    assert result.returncode == 0
    assert result.stdout == "1 file: 0 errors, 0 warnings\n"  # the other lines still count
    assert result.stderr == (
        "warning: .env:1: cannot read this line, skipped (lines are NAME=value, # comments "
        "or blank)\n"
    )


def test_without_dotenv_the_variable_is_unset(tmp_path: Path) -> None:
    folder = dotenv_folder(tmp_path, "")
    (folder / ".env").unlink()
    result = engine_in(folder, "validate")
    assert "environment variable DOTENV_TEST_ACCESS_KEY is not set" in result.stdout
