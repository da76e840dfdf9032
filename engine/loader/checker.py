"""Compiling templates and conditions, each failure turned into a located SpecError."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from ..errors import ExpressionError, SourceSnippet, SpecError
from ..expressions import Condition, compile_condition
from ..spec.context import CONTEXT_NAMES
from ..templates import PlainText, Renderable, TemplateCompiler
from .locate import loc_text, offset_position, position
from .sources import sources
from .yaml_marks import Loc, MarkedDocument

T = TypeVar("T")


class SourceChecker:
    """Compiles templates and conditions, turning each failure into a located SpecError."""

    def __init__(
        self,
        document: MarkedDocument,
        file: str,
        prompts: Mapping[str, str],
    ) -> None:
        self.problems: list[SpecError] = []
        self._document, self._file = document, file
        self._prompts = prompts
        self._templates = TemplateCompiler(prompts, CONTEXT_NAMES)
        self._urls: TemplateCompiler | None = None

    def template(self, source: str, loc: Loc) -> Renderable:
        """The compiled template; a stand-in, never rendered, when it has an error: any
        error stops the load."""
        compiled = self._guard(lambda: self._templates.compile(source, loc_text(loc)), source, loc)
        return PlainText(source) if compiled is None else compiled

    def url_template(self, source: str, loc: Loc) -> Renderable:
        """A template whose `{{ }}` values are percent-encoded (a call's URL)."""
        if self._urls is None:
            from ..outbound import quote_value  # httpx (and click) only for bots that call

            self._urls = TemplateCompiler(self._prompts, CONTEXT_NAMES, finalize=quote_value)
        urls = self._urls
        compiled = self._guard(lambda: urls.compile(source, loc_text(loc)), source, loc)
        return PlainText(source) if compiled is None else compiled

    def condition(self, source: str | None, loc: Loc) -> Condition | None:
        """The compiled condition; None when there is none, or it has an error."""
        if source is None:
            return None
        return self._guard(lambda: compile_condition(source), source, loc)

    def report(self, loc: Loc, message: str, hint: str | None, *, warning: bool = False) -> None:
        """Add a problem found at `loc`, located at its value."""
        mark = position(self._document, loc)
        severity = "warning" if warning else "error"
        self.problems.append(
            SpecError(
                message, self._file, mark.line, mark.column, loc_text(loc), hint, severity=severity
            )
        )

    def _guard(self, build: Callable[[], T], source: str, loc: Loc) -> T | None:
        try:
            return build()
        except ExpressionError as exc:
            self.problems.append(self._located(exc, source, loc))
            return None

    def _located(self, exc: ExpressionError, source: str, loc: Loc) -> SpecError:
        mark = position(self._document, loc)
        line, column = offset_position(mark, self._document.lines, source, exc.offset)
        snippet = SourceSnippet(source, exc.offset)
        return SpecError(
            exc.message, self._file, line, column, loc_text(loc), exc.hint, snippet=snippet
        )


def check_sources(document: MarkedDocument, file: str) -> list[SpecError]:
    """Check the templates and conditions of a file whose structure did not validate."""
    raw_prompts = document.data.get("prompts") if isinstance(document.data, dict) else None
    prompts = {}
    if isinstance(raw_prompts, dict):
        prompts = {str(k): v for k, v in raw_prompts.items() if isinstance(v, str)}
    checker = SourceChecker(document, file, prompts)
    for kind, text, loc in sources(document.data):
        if kind == "jmespath":
            checker.condition(text, loc)
        else:
            checker.template(text, loc)
    return checker.problems
