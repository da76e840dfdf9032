"""`python -m engine validate | test | schema`: thin commands over the loader and runtime."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from . import schema as schema_file
from .loader import LoadReport, load_paths
from .testing import run_bot_tests

DEFAULT_PATHS = ("bots",)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _load(paths: Sequence[str]) -> LoadReport:
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    return load_paths(paths or DEFAULT_PATHS)


def _print_problems(report: LoadReport) -> None:
    for problem in sorted(report.problems, key=lambda p: (p.file, p.line, p.column)):
        click.echo(str(problem))


@click.group()
@click.version_option(package_name=None, version=__import__("engine").__version__)
def main() -> None:
    """Declarative Poe bots: check, test and serve the YAML files in bots/."""


@main.command()
@click.argument("paths", nargs=-1)
def validate(paths: tuple[str, ...]) -> None:
    """Check bot files and print every problem as file:line:column: place: message."""
    report = _load(paths)
    _print_problems(report)
    errors, warnings = len(report.errors), len(report.warnings)
    counts = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    click.echo(f"{_plural(report.files, 'file')}: {counts}")
    sys.exit(1 if errors else 0)


@main.command()
@click.argument("paths", nargs=-1)
def test(paths: tuple[str, ...]) -> None:
    """Run the conversations in each bot's `tests:` block; exit 1 on any failure."""
    report = _load(paths)
    if report.errors:
        _print_problems(report)
        click.echo(f"cannot run tests: {_plural(len(report.errors), 'error')} in the bot files")
        sys.exit(1)
    passed = failed = 0
    for bot in report.bots.values():
        for result in run_bot_tests(bot):
            status = "PASS" if result.passed else "FAIL"
            click.echo(f"{status} {bot.file}::{result.name}")
            for failure in result.failures:
                click.echo(f"    {failure}")
            passed += result.passed
            failed += not result.passed
    untested = sorted(name for name, bot in report.bots.items() if not bot.spec.tests)
    if untested:
        click.echo(f"no tests declared for: {', '.join(untested)}")
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 if schema.json differs from the models.")
def schema(check: bool) -> None:
    """Write schema.json from the spec models (or check that it is current)."""
    if check:
        if not schema_file.is_current():
            click.echo(schema_file.STALE, err=True)
            sys.exit(1)
        click.echo("schema.json is up to date")
        return
    schema_file.write()
    click.echo(f"wrote {schema_file.SCHEMA_PATH}")
