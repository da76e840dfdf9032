"""`python -m engine new NAME`: a bot file to start from, that works before it is edited.

The templates are YAML files in engine/templates_new/, one per kind, so that they read as
bot files do (comments, schema line, tests) and are reviewed as such; the few words that
depend on the new bot are placeholders replaced as plain text. A new file must pass
`validate` and its own `tests:` at once, so `new` checks both on the file it wrote: a
creator starts from green, and a template that went stale fails here (and in the tests)
rather than in a creator's first `engine test`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError, SpecError
from .loader import load_paths
from .schema import SCHEMA_PATH
from .spec.bot import BOT_NAME_PATTERN
from .testing import CaseResult, run_bot_tests

TEMPLATES = Path(__file__).resolve().parent / "templates_new"
KINDS = ("rules", "model", "flow")
# Variables other than the access key that a kind's template reads, and why, for the next
# steps (validate warns about each until it is set).
KIND_VARIABLES = {
    "model": {"OPENAI_API_KEY": "the model's API key"},
    "flow": {
        "ENGINE_STATE_SECRET": "it signs flow state: long and random (openssl rand -hex 32), "
        "the same on every server"
    },
}
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")  # shown as is inside the YAML


class NewBotError(EngineError):
    """A bot file that cannot be written; the text says why and what to do."""


@dataclass
class NewBot:
    """The file written, the variables it reads, and what checking it found."""

    path: Path
    access_key_variable: str
    variables: dict[str, str]  # name: why it is needed
    problems: list[SpecError]
    results: list[CaseResult]

    @property
    def errors(self) -> list[SpecError]:
        return [problem for problem in self.problems if not problem.is_warning]

    @property
    def failed(self) -> list[CaseResult]:
        return [result for result in self.results if not result.passed]


def access_key_variable(name: str) -> str:
    """`my-bot` reads MY_BOT_ACCESS_KEY: upper case, other characters as `_` (as `play
    --connect` names its keys); a name starting with a digit gets a BOT_ prefix, since an
    environment variable cannot."""
    stem = re.sub(r"[^A-Z0-9]", "_", name.upper())
    return f"{'BOT_' if stem[0].isdigit() else ''}{stem}_ACCESS_KEY"


def check_name(name: str) -> None:
    """The rule of the spec's `name:`, which is the URL path Poe posts to."""
    if not re.fullmatch(BOT_NAME_PATTERN, name):
        raise NewBotError(
            f"{name!r} is not a valid bot name: use letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, at most 64 characters (it becomes the URL path "
            "Poe posts to)"
        )


def render(name: str, kind: str, folder: Path) -> str:
    """The template of `kind` for a bot `name` in `folder`."""
    path = folder / f"{name}.yaml"
    schema = Path(os.path.relpath(SCHEMA_PATH, folder.resolve())).as_posix()
    text = (TEMPLATES / f"{kind}.yaml").read_text(encoding="utf-8")
    replacements = {
        "__SCHEMA__": schema,
        "__ENV__": access_key_variable(name),
        "__FILE__": _shown(path),
        "__NAME__": name,
    }
    for placeholder, value in replacements.items():
        text = text.replace(placeholder, value)
    return text


def create(name: str, kind: str, folder: Path) -> NewBot:
    """Write `folder/name.yaml` (never over a file), then validate it and run its tests."""
    check_name(name)
    if kind not in KINDS:
        raise NewBotError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    taken = [folder / f"{name}{suffix}" for suffix in (".yaml", ".yml")]
    for existing in taken:
        if existing.exists():
            raise NewBotError(
                f"{_shown(existing)} already exists; nothing was written. Choose another "
                "name, or delete or rename that file first."
            )
    text = render(name, kind, folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = taken[0]
    try:
        with path.open("x", encoding="utf-8") as file:  # "x": fails if it appeared meanwhile
            file.write(text)
    except FileExistsError:
        raise NewBotError(f"{_shown(path)} already exists; nothing was written.") from None
    report = load_paths([path], jobs=1)
    bot = report.bots.get(name)
    results = run_bot_tests(bot) if bot is not None and not report.errors else []
    return NewBot(
        path, access_key_variable(name), KIND_VARIABLES.get(kind, {}), report.problems, results
    )


def next_steps(new: NewBot, bots_dir: str) -> list[str]:
    """What to do after `new`: the variables to set, then test, chat and play."""
    steps = []
    if not os.environ.get(new.access_key_variable):
        steps.append(
            f"Set {new.access_key_variable} in .env to the access key from the bot's page on "
            "poe.com (until then the bot is served only on a loopback address)."
        )
    steps += [
        f"Set {variable} in .env: {why}."
        for variable, why in new.variables.items()
        if not os.environ.get(variable)
    ]
    name = new.path.stem
    folder = "" if bots_dir == "bots" else f" --bots {bots_dir}"
    steps += [
        f"Edit {_shown(new.path)}, then check it: python -m engine test {_shown(new.path)}",
        f"Talk to it in the terminal: python -m engine chat {name}{folder}",
        f"Or in the browser, reloading on every save: python -m engine play{folder}",
    ]
    return steps


def _shown(path: Path) -> str:
    """The path relative to the current folder when inside it, as the creator typed it."""
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = path.as_posix()
    return shown if _SAFE_PATH.match(shown) else path.name
