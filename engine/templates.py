"""Sandboxed Jinja templates over the context document, compiled once per bot."""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterable, Mapping
from types import CodeType
from typing import Any, Protocol

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import RunError, TemplateError
from .template_cache import TemplateCache

_MARKERS = ("{{", "{%", "{#")


class Renderable(Protocol):
    """What the runtime calls: render the template against one context."""

    source: str

    def render(self, context: Mapping[str, Any]) -> str: ...


class PlainText:
    """A template without Jinja markers: rendering it is free, with Jinja's result."""

    __slots__ = ("_text", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._text = source.removesuffix("\n")  # as Jinja's keep_trailing_newline=False

    def render(self, context: Mapping[str, Any]) -> str:
        return self._text


class JinjaTemplate:
    """A compiled Jinja template; render errors become RunError with the template named."""

    __slots__ = ("_template", "loc", "source")

    def __init__(self, source: str, template: jinja2.Template, loc: str) -> None:
        self.source = source
        self._template = template
        self.loc = loc

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            return self._template.render(context)
        except SecurityError as exc:
            raise RunError(_BROKEN, f"{self.loc}: template refused by the sandbox: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise RunError(_BROKEN, f"{self.loc}: template failed: {exc}") from exc
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise RunError(_BROKEN, f"{self.loc}: template failed: {exc!r}") from exc


_BROKEN = "Sorry, this bot could not build its answer. Its creator has been told."


class TemplateCompiler:
    """One sandboxed environment per bot, whose loader holds that bot's named prompts."""

    def __init__(
        self,
        prompts: Mapping[str, str],
        context_names: Iterable[str],
        cache: TemplateCache | None = None,
    ) -> None:
        self._env = ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined,
            loader=jinja2.DictLoader(dict(prompts)),
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._prompt_names = sorted(prompts)
        self._context_names = sorted(context_names)
        self._cache = cache

    def compile(self, source: str, loc: str = "template") -> Renderable:
        """Compile once at load; raises TemplateError with the offset of the problem."""
        if not any(marker in source for marker in _MARKERS):
            return PlainText(source)
        key = None
        if self._cache is not None:
            key = self._cache.key(source, self._prompt_names, self._context_names)
            cached = self._cache.load(key)
            if cached is not None:  # compiled and checked before, with these very inputs
                return JinjaTemplate(source, self._from_code(cached), loc)
        code = self._compile_checked(source)
        if key is not None and self._cache is not None:
            self._cache.store(key, code)
        return JinjaTemplate(source, self._from_code(code), loc)

    def _from_code(self, code: CodeType) -> jinja2.Template:
        return self._env.template_class.from_code(self._env, code, self._env.make_globals(None))

    def _compile_checked(self, source: str) -> CodeType:
        """Parse, check names, filters and includes, and generate the template's code."""
        try:
            tree = self._env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            message = (exc.message or "").rstrip(".")
            raise TemplateError(
                f"invalid template: {_lower_first(message)}", _line_offset(source, exc.lineno)
            ) from None
        self._check_filters(source, tree)
        generator = _NameRecordingGenerator(self._env)
        try:
            generator.visit(tree)
        except jinja2.TemplateSyntaxError as exc:  # unknown filters and tests land here
            message = (exc.message or "").rstrip(".")
            named = re.search(r"'([^']+)'", message)
            offset = _line_offset(source, exc.lineno)
            if named and named.group(1) in source[offset:]:
                offset = source.index(named.group(1), offset)
            raise TemplateError(f"invalid template: {_lower_first(message)}", offset) from None
        self._check_names(source, tree, generator.undeclared)
        # What Environment.from_string(tree) does, minus its second code-generation pass.
        return compile(generator.output.getvalue(), "<template>", "exec")

    def _check_filters(self, source: str, tree: nodes.Template) -> None:
        """Unknown filters and tests; Jinja itself defers those inside `if` to render time."""
        for node in tree.find_all((nodes.Filter, nodes.Test)):
            kind, known = (
                ("filter", self._env.filters)
                if isinstance(node, nodes.Filter)
                else ("test", self._env.tests)
            )
            if node.name not in known:
                start = _line_offset(source, node.lineno)
                raise TemplateError(
                    f"invalid template: no {kind} named '{node.name}'",
                    max(source.find(node.name, start), start),
                    _did_you_mean(node.name, sorted(known)),
                )

    def _check_names(self, source: str, tree: nodes.Template, undeclared: set[str]) -> None:
        for name in sorted(undeclared):
            if name not in self._context_names:
                raise TemplateError(
                    f"unknown variable '{name}'",
                    _find(source, name),
                    _did_you_mean(name, self._context_names),
                )
        for included in meta.find_referenced_templates(tree):
            if included is not None and included not in self._prompt_names:
                known = ", ".join(self._prompt_names) or "none are defined"
                hint = _did_you_mean(included, self._prompt_names) or f"prompts: {known}"
                raise TemplateError(f"unknown prompt '{included}'", _find(source, included), hint)


class _NameRecordingGenerator(CodeGenerator):
    """Jinja's code generator, also noting the names a template reads from the context.

    `jinja2.meta.find_undeclared_variables` runs a second, output-less code generator to find
    them; recording them while generating the real code gives the same set in one pass, which
    is about a quarter of the time to load a bot.
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        self.output = io.StringIO()
        super().__init__(environment, None, None, self.output, optimized=environment.optimized)
        self.undeclared: set[str] = set()

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, param in frame.symbols.loads.values():  # as meta.TrackingCodeGenerator
            if action == "resolve" and param not in self.environment.globals:
                self.undeclared.add(param)


def _lower_first(message: str) -> str:
    """Jinja capitalises its messages; ours all start in lower case after the place."""
    return message[:1].lower() + message[1:]


def _did_you_mean(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _find(source: str, name: str) -> int:
    offset = source.find(name)
    return max(offset, 0)


def _line_offset(source: str, lineno: int) -> int:
    """Offset of the first character of 1-based line `lineno`."""
    offset = 0
    for _ in range(max(lineno, 1) - 1):
        found = source.find("\n", offset)
        if found == -1:
            break
        offset = found + 1
    return offset
