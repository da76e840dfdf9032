"""`python -m engine validate | test | schema | new | chat | graph | sync | play | canvas build`:
thin commands."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from . import graph, new_bot
from . import schema as schema_file
from .canvas.loader import CANVAS_FOLDER, is_canvas_path, load_canvas_paths
from .chat import (
    USER_ID,
    BrokenBot,
    RequestFields,
    UnknownBot,
    check_language,
    find_bot,
    parse_param,
    run_chat,
)
from .compiled import CompiledBot
from .errors import SpecError, place
from .loader import LoadReport, load_paths
from .poe_api import API_URL_VAR, DEFAULT_API_URL, checked_base_url
from .testing import run_bot_tests

DEFAULT_PATHS = ("bots",)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _load(paths: Sequence[str], jobs: int | None) -> LoadReport:
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    return load_paths(paths or DEFAULT_PATHS, jobs=jobs)


def _load_with_canvas(paths: Sequence[str], jobs: int | None) -> LoadReport:
    """The bots and the canvas apps named (default: bots/ and canvas/), in one report."""
    if paths:
        canvas = [path for path in paths if is_canvas_path(Path(path))]
        bots = [path for path in paths if path not in canvas]
    else:
        canvas = [CANVAS_FOLDER] if Path(CANVAS_FOLDER).is_dir() else []
        bots = list(DEFAULT_PATHS)
    report = _load(bots, jobs) if bots or not paths else LoadReport()
    if not canvas:
        return report
    _require(canvas)
    apps = load_canvas_paths(canvas)
    return LoadReport(report.bots, report.problems + apps.problems, report.files + apps.files)


def _require(paths: Sequence[str]) -> None:
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")


JOBS = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Processes loading the files; default: one per 10 files, at most one per core.",
)


F = TypeVar("F", bound=Callable[..., Any])


def bots_option(meaning: str) -> Callable[[F], F]:
    """`--bots DIR`, the bots folder (default: bots), as each command reads it."""
    return click.option(
        "--bots", "bots_dir", default=DEFAULT_PATHS[0], show_default=True, help=meaning
    )


def _loaded_or_exit(paths: Sequence[str], jobs: int | None, cannot: str) -> LoadReport:
    """The bots, or their errors printed as `validate` does and exit 1: `cannot run tests:
    2 errors in the bot files`."""
    report = _load(paths, jobs)
    if report.errors:
        _print_problems(report)
        click.echo(f"cannot {cannot}: {_plural(len(report.errors), 'error')} in the bot files")
        sys.exit(1)
    return report


def _print_problems(report: LoadReport) -> None:
    for problem in sorted(report.problems, key=place):
        click.echo(str(problem))


def _summary(report: LoadReport) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    counts = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    return f"{_plural(report.files, 'file')}: {counts}"


@click.group()
@click.version_option(package_name=None, version=__import__("engine").__version__)
def main() -> None:
    """Declarative Poe bots: check, test and serve the YAML files in bots/.

    Every command first reads .env in the current folder, if there is one; variables
    already set in the environment win over it.
    """


@main.command()
@click.argument("paths", nargs=-1)
@JOBS
def validate(paths: tuple[str, ...], jobs: int | None) -> None:
    """Check bot files and canvas app files; print every problem as file:line:column:
    place: message.

    Without PATHS: bots/, and canvas/ if there is one. A file in a folder named canvas (or
    that folder) is read as a canvas app; anything else as bots.
    """
    report = _load_with_canvas(paths, jobs)
    _print_problems(report)
    click.echo(_summary(report))
    sys.exit(1 if report.errors else 0)


@main.command()
@click.argument("paths", nargs=-1)
@JOBS
def test(paths: tuple[str, ...], jobs: int | None) -> None:
    """Run the conversations in each bot's `tests:` block; exit 1 on any failure."""
    report = _loaded_or_exit(paths, jobs, "run tests")
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
@click.option("--check", is_flag=True, help="Exit 1 if a schema file differs from the models.")
def schema(check: bool) -> None:
    """Write schema.json and canvas.schema.json from the spec models (or check them)."""
    if check:
        stale = schema_file.stale()
        for message in stale:
            click.echo(message, err=True)
        if stale:
            sys.exit(1)
        click.echo("schema.json and canvas.schema.json are up to date")
        return
    for path in schema_file.write_all():
        click.echo(f"wrote {path}")


@main.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(new_bot.KINDS),
    default="rules",
    show_default=True,
    help="rules: answers from routes; model: a model answers; flow: questions one at a time.",
)
@bots_option("Folder the file is written to (made if missing).")
def new_command(name: str, kind: str, bots_dir: str) -> None:
    """Write BOTS/NAME.yaml, a commented bot file to start from, with its own tests.

    The file is checked at once, as `validate` and `test` would; an existing file is
    never overwritten.
    """
    try:
        new = new_bot.create(name, kind, Path(bots_dir))
    except new_bot.NewBotError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {new.path}, a {kind} bot")
    for problem in sorted(new.problems, key=place):
        click.echo(f"  {problem}")
    errors, warnings = len(new.errors), len(new.problems) - len(new.errors)
    note = " (variables not set yet: see next)" if warnings and not errors else ""
    click.echo(f"validate: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}{note}")
    for result in new.failed:
        click.echo(f"FAIL {new.path}::{result.name}")
        for failure in result.failures:
            click.echo(f"    {failure}")
    passed = len(new.results) - len(new.failed)
    click.echo(f"test: {passed} passed, {len(new.failed)} failed")
    if errors or new.failed or not new.results:
        sys.exit(1)  # a template that no longer fits the spec: a bug of the engine's
    click.echo("next:")
    for number, step in enumerate(new_bot.next_steps(new, bots_dir), 1):
        click.echo(f"  {number}. {step}")


def _params(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    try:
        return dict(parse_param(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _language(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_language(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("chat")
@click.argument("bot")
@bots_option("Folder to find BOT in by name.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_params,
    help="A parameter sent with every message (VALUE read as JSON if it is); repeatable.",
)
@click.option(
    "--language",
    default="en",
    show_default=True,
    metavar="TAG",
    callback=_language,
    help="The user's language (`language`), a BCP 47 tag such as pt-BR; /language changes it.",
)
@click.option(
    "--user-id",
    default=USER_ID,
    show_default=True,
    metavar="ID",
    help="The user's id (`user.id`).",
)
@click.option(
    "--conversation-id",
    metavar="ID",
    help="The conversation's id (`conversation.id`); default: a new one per conversation.",
)
def chat_command(
    bot: str,
    bots_dir: str,
    params: dict[str, Any],
    language: str,
    user_id: str,
    conversation_id: str | None,
) -> None:
    """Chat with one bot in the terminal, through the server's runtime and real models.

    BOT is a bot name in the bots folder, or the path of a .yaml file.
    """
    compiled, warnings = _find(bot, bots_dir)
    fields = RequestFields(language, user_id, conversation_id)
    sys.exit(run_chat(compiled, params, sys.stdin, sys.stdout, warnings, fields=fields))


def _find(bot: str, bots_dir: str) -> tuple[CompiledBot, list[SpecError]]:
    """The bot by name or path; a typo is a usage error, a broken file prints its problems
    as `validate` does and exits 1."""
    try:
        return find_bot(bot, bots_dir)
    except UnknownBot as exc:
        raise click.UsageError(str(exc)) from None
    except BrokenBot as exc:
        _print_problems(exc.report)
        click.echo(_summary(exc.report))
        sys.exit(1)


@main.command("sync")
@click.argument("names", nargs=-1, metavar="[BOT]...")
@bots_option("Folder of bot files.")
@click.option("--dry-run", is_flag=True, help="Print the settings JSON; send nothing.")
@click.option(
    "--base-url",
    envvar=API_URL_VAR,
    default=DEFAULT_API_URL,
    show_default=True,
    show_envvar=True,
    help="Poe's bot API, where update_settings is.",
)
def sync_command(names: tuple[str, ...], bots_dir: str, dry_run: bool, base_url: str) -> None:
    """Send each bot's settings to Poe (default: every bot in the folder), as Poe would
    fetch them from the server; exit 1 if any bot could not be synced.

    A bot is sent to the Poe bot `poe_name` (default: its name) with its access key. What
    changed is shown against the last sync made from this machine (STATE_DIR/poe-sync.json):
    Poe gives no way to read its copy back.
    """
    from .poe_api import sync as poe_sync  # httpx, only for this command

    try:
        base = checked_base_url(base_url, "--base-url")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    report = _loaded_or_exit([bots_dir], None, "sync")
    try:
        targets = poe_sync.select(report.bots, names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if dry_run:
        sys.exit(poe_sync.dry_run(targets, click.echo))
    record = poe_sync.SyncRecord(poe_sync.record_path())
    sys.exit(poe_sync.sync(targets, base, record, click.echo))


@main.command("graph")
@click.argument("bot")
@bots_option("Folder to find BOT in by name.")
@click.option("--markdown", is_flag=True, help="Inside a ```mermaid block, for READMEs.")
def graph_command(bot: str, bots_dir: str, markdown: bool) -> None:
    """Print the bot as a Mermaid flowchart: input rules, routes, flows and their steps.

    BOT is a bot name in the bots folder, or the path of a .yaml file.
    """
    compiled, _ = _find(bot, bots_dir)
    click.echo(graph.markdown(compiled) if markdown else graph.mermaid(compiled), nl=False)


def _connections(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """`NAME=URL` pairs; the URL must be http(s)."""
    found: dict[str, str] = {}
    for value in values:
        name, _, url = value.partition("=")
        if not name or not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{value!r}: write NAME=URL, the URL starting with http://")
        found[name] = url
    return found


@main.command("play")
@bots_option("Folder of bot files to serve and watch.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--connect",
    "connections",
    multiple=True,
    metavar="NAME=URL",
    callback=_connections,
    help="Also chat with a bot served elsewhere (another server, fastapi_poe) at URL, "
    "listed as NAME; its access key is read from PLAY_<NAME>_ACCESS_KEY (NAME upper-cased, "
    "other characters as _). Repeatable.",
)
@click.option(
    "--canvas",
    "canvas_dir",
    default=None,
    help="Folder of canvas apps (.html pages, .yaml apps) to serve at /play/canvas/<name> "
    "with a stand-in for Poe's window.Poe.  [default: canvas beside the bots folder]",
)
def play(
    bots_dir: str, host: str, port: int, connections: dict[str, str], canvas_dir: str | None
) -> None:
    """Serve the bots with the browser playground at /play/, reloading on every edit.

    Chat with each bot as in Poe, see each turn's events, timings and protocol
    violations, and each bot's diagram. A broken file is listed with its errors while its
    last good version keeps answering. Loopback only unless PLAYGROUND_TOKEN is set.
    """
    from .play import serve_playground  # the web stack, only for this command

    if not Path(bots_dir).is_dir():
        raise click.UsageError(f"no such folder: {bots_dir}")
    if canvas_dir is not None and not Path(canvas_dir).is_dir():
        raise click.UsageError(f"no such folder: {canvas_dir}")
    canvas = None if canvas_dir is None else Path(canvas_dir)
    sys.exit(serve_playground(Path(bots_dir), host, port, connections, canvas))


@main.group("canvas")
def canvas_group() -> None:
    """Canvas apps declared in YAML (canvas/*.yaml): build them into HTML for Poe."""


@canvas_group.command("build")
@click.argument("paths", nargs=-1)
@click.option(
    "-o",
    "--output",
    default="dist/canvas",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder the HTML files are written to.",
)
def canvas_build(paths: tuple[str, ...], output: Path) -> None:
    """Write one self-contained HTML file per canvas app, ready for Poe's app creator.

    PATHS are canvas app files or folders (default: canvas/). Problems are printed as
    `validate` prints them; any error writes nothing and exits 1.
    """
    from .canvas.build import write_pages  # Jinja's page template, only for this command

    chosen = list(paths) or [CANVAS_FOLDER]
    _require(chosen)
    apps = load_canvas_paths(chosen)
    for problem in sorted(apps.problems, key=place):
        click.echo(str(problem))
    errors = [problem for problem in apps.problems if not problem.is_warning]
    if errors:
        click.echo(f"nothing written: {_plural(len(errors), 'error')} in the canvas files")
        sys.exit(1)
    for path in write_pages(apps.apps, output):
        click.echo(f"wrote {path}")
