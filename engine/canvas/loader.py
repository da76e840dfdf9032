"""Canvas app files: YAML in, a CompiledCanvas (or located problems) out, told as for bots.

The YAML is read by the bot loader's marked parser and checked by its validation, so a
canvas file's errors carry file:line:column, the same wording and the same hints. What
only a canvas app has is checked here: the message template (the subset the page renders),
the bot it names (a warning when it is none of the local bots), input names used once, and
defaults that keep their own field's rules.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceSnippet, SpecError, TemplateError, did_you_mean
from ..js_patterns import full_match
from ..loader.files import bot_files, parse_marked, read_limited, yaml_error
from ..loader.locate import loc_text, offset_position, position
from ..loader.validation import validate_as
from ..loader.yaml_marks import Loc, MarkedDocument, YamlSyntaxError, parse
from ..spec.canvas import CanvasApp, Input, LongTextInput, NumberInput, TextInput
from .template import Program, compile_program

CANVAS_FOLDER = "canvas"
# `@Name` as Poe reads a message's first word: the bot's handle, up to a space.
_BOT = re.compile(r"@([A-Za-z0-9][A-Za-z0-9_.-]*)(?=\s|$)")


@dataclass(frozen=True)
class CompiledCanvas:
    """A canvas app ready to build: its spec, and its templates as page programs."""

    spec: CanvasApp
    file: str
    bot: str
    message: Program
    replies: list[Program] = field(default_factory=list)


@dataclass
class CanvasReport:
    """Every canvas app that loaded, and every problem found, errors and warnings alike."""

    apps: list[CompiledCanvas] = field(default_factory=list)
    problems: list[SpecError] = field(default_factory=list)
    files: int = 0


def is_canvas_path(path: Path) -> bool:
    """A canvas file lives in a folder named `canvas`; the folder itself counts too."""
    return path.name == CANVAS_FOLDER if path.is_dir() else path.parent.name == CANVAS_FOLDER


def local_bot_names(folder: Path) -> set[str] | None:
    """The names the bots in `folder` answer to, lower-cased as Poe matches them; a broken
    file counts under its `name`, else its file name (as the server lists it). None when
    there is no such folder: nothing to warn against."""
    if not folder.is_dir():
        return None
    names: set[str] = set()
    for path in bot_files([folder]):
        name: object = None
        try:
            data = parse(read_limited(path)).data
            name = data.get("name") if isinstance(data, dict) else None
        except (OSError, UnicodeDecodeError, YamlSyntaxError):
            pass
        names.add((name if isinstance(name, str) else path.stem).lower())
    return names


def bots_folder_for(canvas_file: Path) -> Path:
    """The `bots/` folder beside the canvas file's own folder; `bots` here otherwise."""
    beside = canvas_file.resolve().parent.parent / "bots"
    return beside if beside.is_dir() else Path("bots")


def load_canvas_paths(
    paths: Iterable[str | Path], bot_names: Collection[str] | None = None
) -> CanvasReport:
    """Load every canvas file; `bot_names` (lower case) are the local bots, default: those
    of the `bots/` folder beside each file's folder."""
    report = CanvasReport()
    for path in bot_files(paths):
        names = bot_names if bot_names is not None else local_bot_names(bots_folder_for(path))
        app, problems = load_canvas_file(path, names)
        report.files += 1
        report.problems += problems
        if app is not None:
            report.apps.append(app)
    return report


def load_canvas_file(
    path: Path, bot_names: Collection[str] | None
) -> tuple[CompiledCanvas | None, list[SpecError]]:
    """The file read and loaded; a file that cannot be read is one problem."""
    try:
        text = read_limited(path)
    except YamlSyntaxError as exc:
        return None, [yaml_error(exc, str(path))]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [SpecError(f"cannot read the file: {exc}", str(path))]
    return load_canvas_text(text, str(path), bot_names)


def load_canvas_text(
    text: str, file: str = "<string>", bot_names: Collection[str] | None = None
) -> tuple[CompiledCanvas | None, list[SpecError]]:
    """One canvas app from YAML text; None when any error (not warning) was found.

    `bot_names`: the local bots, lower case; None skips the check of the message's bot.
    """
    document, problems = parse_marked(text, file)
    if document is None:
        return None, problems
    spec, invalid = validate_as(CanvasApp, "a canvas app file", document, file)
    problems += invalid
    checks = _Checks(document, file)
    if spec is None:  # still check the message, so one run reports every problem
        checks.raw_message(document.data, invalid, bot_names)
        return None, problems + checks.problems
    checks.inputs(spec.inputs)
    app = checks.compile(spec, bot_names)
    problems += checks.problems
    if app is None or any(not p.is_warning for p in problems):
        return None, problems
    return app, problems


class _Checks:
    """What the models alone cannot tell, each problem located in the file."""

    def __init__(self, document: MarkedDocument, file: str) -> None:
        self.document, self.file = document, file
        self.problems: list[SpecError] = []

    def inputs(self, inputs: list[Input]) -> None:
        seen: dict[str, int] = {}
        for index, item in enumerate(inputs):
            if item.name in seen:
                self.report(
                    ("inputs", index, "name"),
                    f"input name '{item.name}' is already used by inputs[{seen[item.name]}]",
                    "each input needs its own name: the message template reads it",
                )
            seen.setdefault(item.name, index)
            reason = _default_problem(item)
            if reason is not None:
                self.report(("inputs", index, "default"), reason, "the form would start invalid")

    def compile(self, spec: CanvasApp, bot_names: Collection[str] | None) -> CompiledCanvas | None:
        kinds = {item.name: item.kind for item in spec.inputs}
        message = self.template(spec.message, ("message",), kinds)
        replies = [
            self.template(reply, ("answer", "suggested_replies", index), kinds)
            for index, reply in enumerate(spec.answer.suggested_replies)
        ]
        bot = self.bot(spec.message, bot_names)
        if message is None or bot is None or any(reply is None for reply in replies):
            return None
        return CompiledCanvas(spec, self.file, bot, message, [r for r in replies if r is not None])

    def raw_message(
        self, data: object, invalid: list[SpecError], bot_names: Collection[str] | None
    ) -> None:
        """The message of a file that did not validate, checked over the inputs that did
        name themselves and their kind; skipped when the message or an input is in doubt."""
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            return
        if any(p.loc == "message" or p.loc.startswith("inputs[") for p in invalid):
            return
        raw = data.get("inputs")
        items = raw if isinstance(raw, list) else []
        kinds = {
            item["name"]: item["kind"]
            for item in items
            if isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("kind"), str)
        }
        self.template(data["message"], ("message",), kinds)
        self.bot(data["message"], bot_names)

    def template(self, source: str, loc: Loc, kinds: Mapping[str, str]) -> Program | None:
        try:
            return compile_program(source, kinds)
        except TemplateError as exc:
            mark = position(self.document, loc)
            line, column = offset_position(mark, self.document.lines, source, exc.offset)
            self.problems.append(
                SpecError(
                    exc.message,
                    self.file,
                    line,
                    column,
                    loc_text(loc),
                    exc.hint,
                    snippet=SourceSnippet(source, exc.offset),
                )
            )
            return None

    def bot(self, message: str, bot_names: Collection[str] | None) -> str | None:
        """The bot the message names; a warning when it is none of the local bots."""
        found = _BOT.match(message)
        if found is None:
            self.report(
                ("message",),
                "the message must start with @ and the bot's name",
                "like '@acme-help {{ question }}': Poe sends it to that bot",
            )
            return None
        bot = found.group(1)
        if bot_names is not None and bot.lower() not in bot_names:
            known = sorted(bot_names)
            hint = did_you_mean(bot.lower(), known) or (
                f"local bots: {', '.join(known)}" if known else "the bots folder has no bots"
            )
            self.report(
                ("message",),
                f"'@{bot}' is not one of the local bots; inside Poe it must be a bot there",
                hint,
                warning=True,
            )
        return bot

    def report(self, loc: Loc, message: str, hint: str | None, *, warning: bool = False) -> None:
        mark = position(self.document, loc)
        severity = "warning" if warning else "error"
        self.problems.append(
            SpecError(
                message, self.file, mark.line, mark.column, loc_text(loc), hint, severity=severity
            )
        )


def _default_problem(item: Input) -> str | None:
    """Why a field's default breaks its own rules, or None."""
    if isinstance(item, TextInput | LongTextInput) and item.default:
        value = item.default
        if item.max_length is not None and len(value) > item.max_length:
            return f"the default is longer than max_length {item.max_length}"
        if item.min_length is not None and len(value.strip()) < item.min_length:
            return f"the default is shorter than min_length {item.min_length}"
        if item.pattern is not None and not full_match(item.pattern, value):
            return "the default does not match the pattern"
    if isinstance(item, NumberInput) and item.default is not None:
        number = item.default
        if item.integer and not number.is_integer():
            return "the default is not a whole number"
        if (item.min is not None and number < item.min) or (
            item.max is not None and number > item.max
        ):
            return "the default is outside min and max"
    return None


__all__ = [
    "CANVAS_FOLDER",
    "CanvasReport",
    "CompiledCanvas",
    "is_canvas_path",
    "load_canvas_paths",
    "load_canvas_text",
    "local_bot_names",
]
