"""The `vars` a template or a condition reads, found in its parsed tree, not its text.

A read that allows the var to be missing is left out: `vars.x | default(...)`,
`vars.x is defined` (or `is not defined`) and a method call such as `vars.get('x')`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2
import jmespath
from jinja2 import nodes

_PARSER = jinja2.Environment()  # parsing only: never renders


def template_reads(source: str) -> list[str]:
    """The vars a (checked) template reads, in order of appearance."""
    try:
        tree = _PARSER.parse(source)
    except (jinja2.TemplateSyntaxError, RecursionError):
        return []  # reported where the template is compiled
    allowed = {id(node.node) for node in tree.find_all(nodes.Filter) if node.name == "default"}
    allowed |= {id(node.node) for node in tree.find_all(nodes.Test) if node.name == "defined"}
    allowed |= {id(node.node) for node in tree.find_all(nodes.Call)}
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in allowed:
            continue
        if isinstance(node, nodes.Getattr) and _is_vars(node.node):
            found.append(node.attr)
        elif isinstance(node, nodes.Getitem) and _is_vars(node.node):
            key = node.arg
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                found.append(key.value)
    return found


def condition_reads(source: str) -> list[str]:
    """The vars a (checked) JMESPath expression reads: `vars.x`, `vars."x"`."""
    try:
        tree = jmespath.compile(source).parsed
    except (jmespath.exceptions.JMESPathError, RecursionError):
        return []  # reported where the condition is compiled
    return list(_subexpression_reads(tree))


def _is_vars(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "vars" and node.ctx == "load"


def _subexpression_reads(node: Any) -> Iterator[str]:
    if not isinstance(node, dict):
        return
    children = node.get("children", [])
    # `vars.a.b` parses as one subexpression of the fields vars, a and b.
    if node.get("type") == "subexpression" and len(children) >= 2:
        first, second = children[:2]
        vars_field = first == {"type": "field", "children": [], "value": "vars"}
        if vars_field and isinstance(second, dict) and second.get("type") == "field":
            yield str(second["value"])
    for child in children:
        yield from _subexpression_reads(child)
