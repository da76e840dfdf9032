"""JMESPath conditions with the engine's own functions, checked when a bot loads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jmespath
from jmespath import exceptions as jp_errors
from jmespath import functions
from jmespath.lexer import Lexer
from jmespath.visitor import TreeInterpreter

from .errors import ExpressionError, did_you_mean
from .patterns import PatternError, compile_pattern


class EngineFunctions(functions.Functions):
    """JMESPath's built-ins plus text helpers that bot conditions need most."""

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_regex(self, subject: str | None, pattern: str) -> bool:
        return subject is not None and compile_pattern(pattern).found_in(subject)

    @functions.signature({"types": ["string"]})
    def _func_lower(self, subject: str) -> str:
        return subject.lower()

    @functions.signature({"types": ["string"]})
    def _func_upper(self, subject: str) -> str:
        return subject.upper()

    @functions.signature({"types": ["string"]})
    def _func_trim(self, subject: str) -> str:
        return subject.strip()

    @functions.signature({"types": ["string"]})
    def _func_word_count(self, subject: str) -> int:
        return len(subject.split())

    @functions.signature({"types": ["string"]}, {"types": ["array-string"]})
    def _func_starts_with_any(self, subject: str, prefixes: list[str]) -> bool:
        return subject.startswith(tuple(prefixes))

    @functions.signature({"types": ["string"]}, {"types": ["array-string"]})
    def _func_contains_any(self, subject: str, needles: list[str]) -> bool:
        return any(needle in subject for needle in needles)


_OPTIONS = jmespath.Options(custom_functions=EngineFunctions())
# What `ParsedResult.search` builds on every call, made once: it keeps no state between
# searches but the visit methods it has looked up (a tenth of a condition's cost).
_INTERPRETER = TreeInterpreter(_OPTIONS)
FUNCTION_NAMES = sorted(EngineFunctions.FUNCTION_TABLE)
_SIGNATURES: Mapping[str, list[Any]] = {
    name: spec["signature"] for name, spec in EngineFunctions.FUNCTION_TABLE.items()
}


# JMESPath's parser recurses a few frames per `(`, `[`, `{` or `!`: about 300 of them reach
# Python's recursion limit, fewer the deeper the caller's stack. Its parse cache would then
# make the verdict depend on which caller saw an expression first, so a limit far below
# that is checked before parsing, and the same source always gets the same answer.
MAX_DEPTH = 50
TOO_DEEP = f"invalid expression: it is nested more than {MAX_DEPTH} levels deep"
_OPENERS = frozenset({"lparen", "lbracket", "lbrace", "filter", "flatten"})
_CLOSERS = frozenset({"rparen", "rbracket", "rbrace"})


class Condition:
    """A compiled JMESPath expression; `matches` uses JMESPath truthiness."""

    __slots__ = ("_parsed", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        _check_depth(source)
        try:
            self._parsed = _parse(source)
            _check_functions(source, self._parsed.parsed)
        except RecursionError:  # not expected below MAX_DEPTH; never a traceback all the same
            raise ExpressionError(TOO_DEEP, 0, "split the condition into simpler ones") from None

    def search(self, context: Mapping[str, Any]) -> Any:
        return _INTERPRETER.visit(self._parsed.parsed, context)

    def matches(self, context: Mapping[str, Any]) -> bool:
        # JMESPath's false values: null, false, "", [], {} (0 is true, as in the spec).
        return is_truthy(self.search(context))


def is_truthy(value: Any) -> bool:
    """JMESPath truthiness; compared by identity and type, since `0 == False` in Python."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and not value)


def _check_depth(source: str) -> None:
    """Refuse nesting past MAX_DEPTH, found by JMESPath's own lexer (brackets in strings
    do not count); only a source with that many brackets and `!` at all is lexed."""
    if sum(source.count(mark) for mark in "([{!") <= MAX_DEPTH:
        return
    depth = nots = 0
    for token in _lex(source):
        kind = token["type"]
        nots = nots + 1 if kind == "not" else 0
        depth += (kind in _OPENERS) - (kind in _CLOSERS)
        if depth + nots > MAX_DEPTH:
            raise ExpressionError(TOO_DEEP, token["start"], "split the condition into simpler ones")


def _lex(source: str) -> list[Any]:  # the stubs name its TypedDict privately
    try:
        return list(Lexer().tokenize(source))
    except jp_errors.JMESPathError:
        return []  # the parser reports it, with its place


def compile_condition(source: str) -> Condition:
    """Compile once at load; raises ExpressionError with the offset of the problem."""
    return Condition(source)


def _parse(source: str) -> Any:
    try:
        return jmespath.compile(source)
    except jp_errors.EmptyExpressionError:
        raise ExpressionError("invalid expression: it is empty", 0) from None
    except jp_errors.IncompleteExpressionError as exc:
        raise ExpressionError("invalid expression: it ends too early", exc.lex_position) from None
    except jp_errors.LexerError as exc:
        raise ExpressionError(
            f"invalid expression: {exc.message.lower()}", exc.lex_position
        ) from None
    except jp_errors.ParseError as exc:
        if exc.token_type.lower() == "eof":
            raise ExpressionError(
                "invalid expression: it ends too early", exc.lex_position
            ) from None
        token = exc.token_value if exc.token_value is not None else exc.token_type
        message = f"invalid expression: unexpected {token!r}"
        raise ExpressionError(message, exc.lex_position) from None


def _check_functions(source: str, node: dict[str, Any], seen: dict[str, int] | None = None) -> None:
    """Unknown names, wrong arity and bad regex literals are load errors, not runtime ones."""
    seen = {} if seen is None else seen
    if node.get("type") == "function_expression":
        _check_call(source, node, seen)
    for child in node.get("children", []):
        if isinstance(child, dict):
            _check_functions(source, child, seen)


def _check_call(source: str, node: dict[str, Any], seen: dict[str, int]) -> None:
    name, args = node["value"], node["children"]
    occurrence = seen[name] = seen.get(name, 0) + 1

    def offset() -> int:  # found only when there is an error to show: loading stays fast
        return _call_offset(source, name, occurrence)

    if name not in _SIGNATURES:
        raise ExpressionError(
            f"unknown function '{name}'", offset(), did_you_mean(name, FUNCTION_NAMES)
        )
    signature = _SIGNATURES[name]
    variadic = bool(signature) and signature[-1].get("variadic", False)
    if len(args) != len(signature) and not (variadic and len(args) >= len(signature)):
        raise ExpressionError(
            f"{name}() takes {len(signature)} argument{'s' * (len(signature) != 1)}, "
            f"got {len(args)}",
            offset(),
        )
    if name == "regex":
        if args[1].get("type") != "literal":
            # RE2 runs in time linear in the text, but its cost grows with the pattern too,
            # and a user's pattern would make every condition a compile: patterns are the
            # bot author's.
            raise ExpressionError(
                "regex() takes its pattern as a literal like '(?i)refund', "
                "never from the conversation",
                offset(),
                "a pattern sent by a user could make the server hang",
            )
        _check_regex_literal(source, args[1]["value"], offset)


def _check_regex_literal(source: str, pattern: Any, offset: Callable[[], int]) -> None:
    if not isinstance(pattern, str):
        raise ExpressionError("regex() needs its pattern as a string", offset())
    try:
        compile_pattern(pattern)  # the same cache the runtime uses: compiled once, here
    except PatternError as exc:
        raise ExpressionError(
            f"invalid regular expression {pattern!r}: {exc.reason}",
            _pattern_offset(source, offset(), exc.offset),
            exc.hint,
        ) from None


def _pattern_offset(source: str, call: int, position: int) -> int:
    """Where character `position` of the pattern is written, when the pattern is the call's
    second argument written as a `'raw string'`; else the call's offset."""
    tokens = _tokens(source)
    depth = 0
    for index, token in enumerate(tokens):
        if token.start < call:
            continue
        depth += token.kind in _OPENING
        depth -= token.kind in _CLOSING
        if depth == 1 and token.kind == "comma":
            literal = tokens[index + 1]
            if literal.kind != "literal" or source[literal.start] != "'":
                return call  # a JSON literal: `"..."`
            return _raw_string_offset(source, literal.start + 1, position)
    return call


def _raw_string_offset(source: str, start: int, position: int) -> int:
    """Offset of character `position` of the raw string whose text begins at `start`,
    where `\\'` is the only escape (one character, written with two)."""
    offset = start
    for _ in range(position):
        offset += 2 if source.startswith("\\'", offset) else 1
    return offset


_OPENING = frozenset({"lparen", "lbracket", "lbrace", "filter"})  # `[?` opens a filter
_CLOSING = frozenset({"rparen", "rbracket", "rbrace"})


def _call_offset(source: str, name: str, occurrence: int = 1) -> int:
    """Offset of the `occurrence`-th call of `name` (the checker walks calls in source order),
    found in the expression's tokens: text in a string literal is never a call."""
    tokens = _tokens(source)
    calls = [
        token.start
        for token, after in zip(tokens, tokens[1:], strict=False)
        if token.kind == "unquoted_identifier" and token.value == name and after.kind == "lparen"
    ]
    if not calls:
        return 0
    return calls[min(occurrence, len(calls)) - 1]


class _Token(NamedTuple):
    kind: str
    value: Any  # a literal's value, else the text
    start: int


def _tokens(source: str) -> list[_Token]:
    """JMESPath's tokens for a source that parsed: lexed again only to place an error."""
    return [_Token(t["type"], t["value"], t["start"]) for t in Lexer().tokenize(source)]
