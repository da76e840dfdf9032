"""Sandboxed Jinja templates over the context document: checked at load, compiled once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Protocol

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .errors import RunError, TemplateError, did_you_mean
from .template_scope import usage
from .template_tokens import filter_offset, read_offset, reference_offset, tokens

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
    """A checked Jinja template, its Python code generated at the first render.

    Loading checks everything that can fail (see `TemplateCompiler.compile`); generating
    and compiling the code is most of the cost, so a bots folder loads fast and each
    template pays it once per process, when it is first needed. Render errors become
    RunError with the template named.
    """

    __slots__ = ("_compiler", "_template", "loc", "source")

    def __init__(self, source: str, loc: str, compiler: TemplateCompiler) -> None:
        self.source = source
        self.loc = loc
        self._compiler = compiler
        self._template: jinja2.Template | None = None

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            return self.prepare().render(context)
        except SecurityError as exc:
            raise RunError(_BROKEN, f"{self.loc}: template refused by the sandbox: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise RunError(_BROKEN, f"{self.loc}: template failed: {exc}") from exc
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise RunError(_BROKEN, f"{self.loc}: template failed: {exc!r}") from exc

    def prepare(self) -> jinja2.Template:
        """The compiled template, its code generated and compiled on the first call."""
        if self._template is None:
            self._template = self._compiler.build(self.source)
        return self._template

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (a bots folder loaded in parallel) without its code, built again lazily."""
        return JinjaTemplate, (self.source, self.loc, self._compiler)


_BROKEN = "Sorry, this bot could not build its answer. Its creator has been told."


class TemplateCompiler:
    """One sandboxed environment per bot, whose loader holds that bot's named prompts."""

    def __init__(
        self,
        prompts: Mapping[str, str],
        context_names: Iterable[str],
        finalize: Callable[[Any], Any] | None = None,
    ) -> None:
        self._prompts = dict(prompts)
        self._finalize = finalize  # every `{{ }}` value passes through it (URLs quote them)
        self._env = _Environment(
            undefined=jinja2.StrictUndefined,
            loader=jinja2.DictLoader(self._prompts),
            autoescape=False,
            keep_trailing_newline=False,
            finalize=finalize,
        )
        self._prompt_names = sorted(prompts)
        self._context_names = sorted(context_names)

    def __reduce__(self) -> tuple[Any, ...]:
        return TemplateCompiler, (self._prompts, self._context_names, self._finalize)

    def compile(self, source: str, loc: str = "template") -> Renderable:
        """Check a template at load; raises TemplateError with the offset of the problem.

        Syntax, variable names, filters, tests and included prompts are all checked here;
        the Python code is generated at the first render.
        """
        if not any(marker in source for marker in _MARKERS):
            return PlainText(source)
        self._check(source)
        return JinjaTemplate(source, loc, self)

    def build(self, source: str) -> jinja2.Template:
        """The template of a checked source, its code generated and compiled now; an
        `{% include %}` of a prompt without Jinja markers becomes that prompt's text."""
        if "include" not in source:
            return self._env.from_string(source)
        tree = _PlainIncludes(self).visit(self._env.parse(source))
        tree.set_environment(self._env)
        return self._env.from_string(tree)

    def plain_text(self, name: str) -> str | None:
        """What including prompt `name` writes, if it has no Jinja markers (whatever the
        context: it reads none), else None."""
        source = self._prompts.get(name)
        if source is None or any(marker in source for marker in _MARKERS):
            return None
        return self._env.from_string(source).render()

    def _check(self, source: str) -> None:
        """Parse, then check names, filters, tests and includes, as generating code would."""
        self._check_depth(source)
        try:
            used = usage(_parse(self._env, source))
        except jinja2.TemplateSyntaxError as exc:  # and what only code generation would find
            message = (exc.message or "").rstrip(".")
            raise TemplateError(
                f"invalid template: {_lower_first(message)}", line_offset(source, exc.lineno)
            ) from None
        except RecursionError:  # not expected below MAX_DEPTH; never a traceback all the same
            raise TemplateError(TOO_DEEP, 0, "split it into simpler parts") from None
        self._check_filters(source, used.filters)
        self._check_names(source, used.reads - self._env.globals.keys())
        self._check_includes(source, used.references)

    def _check_depth(self, source: str) -> None:
        """Refuse brackets and `not`s nested past MAX_DEPTH, found by Jinja's own lexer;
        only a source with that many brackets at all is lexed."""
        if sum(source.count(mark) for mark in "([{") + source.count("not ") <= MAX_DEPTH:
            return
        depth = nots = 0
        try:
            for lineno, kind, value in self._env.lex(source):
                nots = nots + 1 if (kind, value) == ("name", "not") else 0
                if kind == "operator":
                    depth += (value in "([{") - (value in ")]}")
                if depth + nots > MAX_DEPTH:
                    raise TemplateError(
                        TOO_DEEP, line_offset(source, lineno), "split it into simpler parts"
                    )
        except jinja2.TemplateSyntaxError:
            return  # the parser reports it, with its place

    def _check_filters(self, source: str, used: list[nodes.Filter | nodes.Test]) -> None:
        """Unknown filters and tests; Jinja itself defers those inside `if` to render time."""
        for node in used:
            kind, known = (
                ("filter", self._env.filters)
                if isinstance(node, nodes.Filter)
                else ("test", self._env.tests)
            )
            if node.name not in known:
                raise TemplateError(
                    f"invalid template: no {kind} named '{node.name}'",
                    filter_offset(tokens(self._env, source), node),
                    did_you_mean(node.name, sorted(known)),
                )

    def _check_names(self, source: str, reads: set[str]) -> None:
        for name in sorted(reads):
            if name not in self._context_names:
                raise TemplateError(
                    f"unknown variable '{name}'",
                    read_offset(tokens(self._env, source), name),
                    did_you_mean(name, self._context_names),
                )

    def _check_includes(self, source: str, references: list[str | None]) -> None:
        for included in references:
            if included is not None and included not in self._prompt_names:
                known = ", ".join(self._prompt_names) or "none are defined"
                hint = did_you_mean(included, self._prompt_names) or f"prompts: {known}"
                offset = reference_offset(tokens(self._env, source), included)
                raise TemplateError(f"unknown prompt '{included}'", offset, hint)


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, each template's globals one plain dict: Jinja's ChainMap over the
    environment's is read item by item in Python on every render (a twentieth of a
    rule-based turn). The engine never changes an environment's globals once made."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class _PlainIncludes(NodeTransformer):
    """Includes of plain prompts (a signature, a disclaimer) replaced by their text, as
    Jinja writes it: an include makes a new context and looks the template up on every
    render (a tenth of a rule-based turn with one)."""

    def __init__(self, compiler: TemplateCompiler) -> None:
        self._compiler = compiler

    def visit_Include(self, node: nodes.Include) -> nodes.Node:  # noqa: N802 - Jinja's name
        name = node.template.value if isinstance(node.template, nodes.Const) else None
        text = self._compiler.plain_text(name) if isinstance(name, str) else None
        if text is None:
            return node
        return nodes.Output([nodes.TemplateData(text, lineno=node.lineno)], lineno=node.lineno)


# Jinja's parser recurses about 16 frames per bracket: some 60 reach Python's recursion
# limit, fewer the deeper the caller's stack. A limit far below that gives every source the
# same verdict wherever it is checked, and leaves room for code generation at first render.
MAX_DEPTH = 20
TOO_DEEP = f"invalid template: it is nested more than {MAX_DEPTH} levels deep"


def _parse(env: jinja2.Environment, source: str) -> nodes.Template:
    """`Environment.parse` without its last pass, which sets `node.environment` on every
    node for code generation: the checks never read it (6 % of a load)."""
    return nodes.Template(Parser(env, source).subparse(), lineno=1)


def _lower_first(message: str) -> str:
    """Jinja capitalises its messages; ours all start in lower case after the place."""
    return message[:1].lower() + message[1:]


def line_offset(source: str, lineno: int) -> int:
    """Offset of the first character of 1-based line `lineno`: Jinja's errors and nodes
    know no more than the line."""
    offset = 0
    for _ in range(max(lineno, 1) - 1):
        found = source.find("\n", offset)
        if found == -1:
            break
        offset = found + 1
    return offset
