"""The only place that knows about files: YAML in, CompiledBot (or located errors) out."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..compiled import CompiledBot
from ..errors import SpecError, place
from .checker import check_sources
from .compile import compile_bot
from .keys import MIN_ACCESS_KEY_LENGTH, access_key, is_weak
from .locate import loc_text, position
from .parallel import default_jobs, fork_map
from .traps import syntax_hint
from .unvalidated import unvalidated_problems
from .validation import validate
from .yaml_marks import MAX_BYTES, MarkedDocument, YamlSyntaxError, parse, too_large

__all__ = [
    "MIN_ACCESS_KEY_LENGTH",
    "LoadReport",
    "bot_files",
    "is_weak",
    "load_paths",
    "load_text",
]

BOT_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadReport:
    """Every bot that loaded, and every problem found, errors and warnings alike."""

    bots: dict[str, CompiledBot] = field(default_factory=dict)
    problems: list[SpecError] = field(default_factory=list)
    files: int = 0

    @property
    def errors(self) -> list[SpecError]:
        return sorted((p for p in self.problems if not p.is_warning), key=place)

    @property
    def warnings(self) -> list[SpecError]:
        return sorted((p for p in self.problems if p.is_warning), key=place)


def load_text(
    text: str,
    file: str = "<string>",
    env: Mapping[str, str] | None = None,
) -> tuple[CompiledBot | None, list[SpecError]]:
    """Load one bot from YAML text; the bot is None when any error (not warning) was found.

    `env` resolves `${VAR}` references (default: the process environment).
    """
    environ = os.environ if env is None else env
    try:
        document = parse(text)
    except YamlSyntaxError as exc:
        trap = syntax_hint(text.splitlines(), exc.line, exc.column, exc.message)
        return None, [_yaml_error(exc, file, trap)]
    problems = _duplicate_keys(document, file)
    spec, invalid = validate(document, file)
    problems += invalid
    if spec is None:
        problems += check_sources(document, file)
        return None, problems + unvalidated_problems(document, file, environ)
    key, key_problems = access_key(spec.access_key, document, file, environ)
    name = spec.name or Path(file).stem
    bot, compile_problems = compile_bot(spec, document, file, name, key, environ)
    problems += key_problems + compile_problems
    if any(not p.is_warning for p in problems):
        return None, problems
    return bot, problems


def _yaml_error(exc: YamlSyntaxError, file: str, trap: str | None = None) -> SpecError:
    """The parser's error, with its own hint or else the YAML trap that explains it."""
    hint = exc.hint or trap
    return SpecError(exc.message, file, exc.line, exc.column, loc_text(exc.loc), hint)


def _duplicate_keys(document: MarkedDocument, file: str) -> list[SpecError]:
    return [
        SpecError(
            f"duplicate key '{loc[-1]}'",
            file,
            mark.line,
            mark.column,
            loc_text(loc),
            hint="a key may appear once; the later value would silently win",
        )
        for loc, mark in document.duplicates
    ]


def bot_files(paths: Iterable[str | Path]) -> list[Path]:
    """The bot files named, directories expanded to their *.yaml and *.yml files."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in BOT_SUFFIXES)
        else:
            found.append(path)
    return found


def load_paths(
    paths: Iterable[str | Path],
    env: Mapping[str, str] | None = None,
    jobs: int | None = None,
) -> LoadReport:
    """Load every bot file, collecting all problems across files, duplicate names included.

    `jobs` processes share the files (default: one per 10 files, at most one per core); the
    report is the same whatever the number.
    """
    files = bot_files(paths)
    environ = dict(os.environ if env is None else env)
    loaded = fork_map(partial(_load_file, environ=environ), files, jobs or default_jobs(len(files)))
    report = LoadReport(files=len(files))
    defined_in: dict[str, str] = {}
    for bot, problems in loaded:
        report.problems += problems
        if bot is None:
            continue
        if bot.name in defined_in:
            report.problems.append(_duplicate_name(bot, defined_in[bot.name]))
            continue
        defined_in[bot.name] = bot.file
        report.bots[bot.name] = bot
    return report


def _load_file(
    path: Path, environ: Mapping[str, str]
) -> tuple[CompiledBot | None, list[SpecError]]:
    try:
        text = _read(path)
    except YamlSyntaxError as exc:
        return None, [_yaml_error(exc, str(path))]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [SpecError(f"cannot read the file: {exc}", str(path))]
    return load_text(text, str(path), environ)


def _read(path: Path) -> str:
    """The file's text, read no further than a bot file may go: a path may be `/dev/zero`."""
    with path.open(encoding="utf-8") as stream:
        text = stream.read(MAX_BYTES + 1)  # characters: parse() checks the bytes of the rest
        if len(text) > MAX_BYTES:
            raise too_large(os.fstat(stream.fileno()).st_size)
    return text


def _duplicate_name(bot: CompiledBot, first_file: str) -> SpecError:
    line, column = 1, 1
    if bot.spec.name is not None:  # read again: rare, and cheaper than keeping every text
        mark = position(parse(Path(bot.file).read_text(encoding="utf-8")), ("name",))
        line, column = mark.line, mark.column
    return SpecError(
        f"bot name '{bot.name}' is already used by {first_file}",
        bot.file,
        line,
        column,
        "name",
        hint="each bot needs its own name; it is the URL path",
    )
