"""The engine's exceptions; their text is a contract that tests assert in full."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class SourceSnippet:
    """The offending source text (an expression, template or regex) and where in it."""

    text: str
    offset: int


@dataclass
class SpecError(EngineError, ValueError):
    """A problem in a bot file, located as precisely as the YAML allows."""

    message: str
    file: str = "<string>"
    line: int = 1
    column: int = 1
    loc: str = ""
    hint: str | None = None
    snippet: SourceSnippet | None = None
    severity: str = "error"
    extra_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        label = "warning: " if self.is_warning else ""
        head = f"{where}{label}{self.loc + ': ' if self.loc else ''}{self.message}"
        if self.hint:
            head += f" ({self.hint})"
        lines = [head, *self.extra_lines]
        if self.snippet is not None:
            lines += _caret_lines(self.snippet)
        return "\n".join(lines)


def place(error: SpecError) -> tuple[str, int, int]:
    """The order problems are reported in: by file, then line, then column."""
    return error.file, error.line, error.column


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """`did you mean 'regex'?` when one of `choices` is close to `name`, else None."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _caret_lines(snippet: SourceSnippet) -> list[str]:
    """Show the line of the snippet that holds the offset, with a caret under it."""
    before = snippet.text[: snippet.offset]
    line_start = before.rfind("\n") + 1
    line_end = snippet.text.find("\n", snippet.offset)
    line = snippet.text[line_start : line_end if line_end != -1 else None]
    return [f"    {_visible(line)}", f"    {' ' * (snippet.offset - line_start)}^"]


def _visible(line: str) -> str:
    """Control characters (a backspace that YAML's `"\\b"` made, say) as their one-column
    Unicode pictures, so the caret still lines up and the terminal shows them."""
    return line.translate(_PICTURES) if any(ord(c) < 32 or ord(c) == 127 for c in line) else line


# U+2400..U+241F picture C0 controls; U+2421 is DEL. A tab stays a tab.
_PICTURES = {code: 0x2400 + code for code in range(32) if code != 9} | {127: 0x2421}


class SpecErrors(EngineError):
    """Every problem found while loading one or more files, sorted by place."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(errors, key=place)
        super().__init__("\n".join(str(error) for error in self.errors))


class ExpressionError(EngineError):
    """A JMESPath condition that does not compile, with the offset inside it."""

    def __init__(self, message: str, offset: int = 0, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


class TemplateError(ExpressionError):
    """A Jinja template that does not compile, with the offset inside it."""


class RunError(EngineError):
    """A failure while answering one request: its text is safe to show the user."""

    def __init__(self, user_text: str, detail: str, *, allow_retry: bool = False) -> None:
        super().__init__(detail)
        self.user_text = user_text
        self.detail = detail
        self.allow_retry = allow_retry


class LibyamlMissing(EngineError, ImportError):
    """PyYAML without libyaml: the engine refuses to read bot files with any other parser."""
