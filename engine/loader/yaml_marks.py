"""YAML to plain data, keeping the line and column of every key and value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

Loc = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"

try:  # libyaml is much faster; fall back to pure Python where it is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


_STR = "tag:yaml.org,2002:str"


class Mark(NamedTuple):
    """1-based position of a node, with the scalar style needed to place offsets inside it.

    A named tuple: a file has hundreds of marks, made three times faster than a dataclass's.
    """

    line: int
    column: int
    style: str | None = None


@dataclass
class MarkedDocument:
    """The parsed data plus where each part came from."""

    data: Any
    lines: list[str] = field(default_factory=list)
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)
    duplicates: list[tuple[Loc, Mark]] = field(default_factory=list)


class YamlSyntaxError(Exception):
    """Broken YAML, with a 1-based position."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def parse(text: str) -> MarkedDocument:
    """Parse one YAML document; an empty file gives `None` data."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(f"invalid YAML: {problem}", line, column) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", 1, 1) from None
    document = MarkedDocument(data=None, lines=text.splitlines())
    if root is not None:
        document.data = _Builder(document).build(root, ())
    return document


def _mark(node: yaml.Node) -> Mark:
    style = getattr(node, "style", None)
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1, style)


class _Builder:
    def __init__(self, document: MarkedDocument) -> None:
        self._document = document
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self._document.values[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]
        if node.tag == _STR:
            return node.value  # most scalars are text: skip the constructor's dispatch
        return self._constructor.construct_object(node)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        self._constructor.flatten_mapping(node)  # merge keys (<<) as PyYAML does
        merged = len(node.value) - own  # merged pairs come first; the mapping's own may override
        result: dict[Any, Any] = {}
        written: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if key_node.tag == _STR:
                key = key_node.value
            else:
                key = self._constructor.construct_object(key_node)
                key = key if isinstance(key, str | int) else str(key)
            child = (*loc, key)
            if index >= merged:
                if key in written:
                    self._document.duplicates.append((child, _mark(key_node)))
                written.add(key)
            self._document.keys[child] = _mark(key_node)
            result[key] = self.build(value_node, child)
        return result
