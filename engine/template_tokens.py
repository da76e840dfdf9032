"""Where a name is written in a template, found from Jinja's own tokens.

A search of the text finds `lang` inside `language`, inside a string or as an attribute
(`user.lang`); the lexer's tokens say what each word is. The template is lexed again only
when it has an error to show, so loading a correct bot costs nothing more.
"""

from __future__ import annotations

from typing import NamedTuple

import jinja2
from jinja2 import nodes

# Keywords after which a name is stored or named, not read from the context.
_NAMING = frozenset({"for", "set", "macro", "block", "import", "as", "filter", "call"})
_REFERENCING = frozenset({"include", "import", "from", "extends"})


class Token(NamedTuple):
    offset: int  # in the source
    kind: str  # Jinja's token type: name, string, operator, ...
    value: str  # as written, quotes included


def tokens(env: jinja2.Environment, source: str) -> list[Token]:
    """The template's tokens with their offsets, whitespace left out."""
    found: list[Token] = []
    cursor = 0
    for _, kind, value in env.lexer.tokeniter(source, None):
        # The lexer gives each token's text, not its offset: the text is found in order.
        # Only a token Jinja changed (`\r\n` made `\n`) is not; the next one resumes.
        at = source.find(value, cursor)
        if at == -1:
            continue
        cursor = at + len(value)
        if kind != "whitespace":
            found.append(Token(at, kind, value))
    return found


def read_offset(found: list[Token], name: str) -> int:
    """Offset of the first place `name` is read as a variable; 0 if none is found."""
    for index, token in enumerate(found):
        if token.kind == "name" and token.value == name and _is_read(found, index):
            return token.offset
    return 0


def filter_offset(found: list[Token], node: nodes.Filter | nodes.Test) -> int:
    """Offset of the first use of the filter (`| name`, `{% filter name %}`) or test
    (`is name`, `is not name`) that `node` is; 0 if none is found."""
    test = isinstance(node, nodes.Test)
    for index, token in enumerate(found):
        if token.kind == "name" and token.value == node.name:
            before = _word(found, index - 1)
            if test and (before == "is" or (before == "not" and _word(found, index - 2) == "is")):
                return token.offset
            if not test and (before in ("|", "filter")):
                return token.offset
    return 0


def reference_offset(found: list[Token], name: str) -> int:
    """Offset of prompt `name` in the string naming it in an include, import or extends;
    0 if none is found."""
    referencing = False
    for token in found:
        if token.kind == "block_end":
            referencing = False
        elif token.kind == "name" and token.value in _REFERENCING:
            referencing = True
        elif referencing and token.kind == "string" and token.value[1:-1] == name:
            return token.offset + 1  # inside the quotes
    return 0


def _is_read(found: list[Token], index: int) -> bool:
    before, after = _word(found, index - 1), _word(found, index + 1)
    if before in (".", "|", "is") or before in _NAMING or after == "=":
        return False  # an attribute, filter, test, keyword argument or name being stored
    return not (before == "not" and _word(found, index - 2) == "is")


def _word(found: list[Token], index: int) -> str | None:
    """The text of a name or operator token; None for anything else or out of range."""
    if 0 <= index < len(found) and found[index].kind in ("name", "operator"):
        return found[index].value
    return None
