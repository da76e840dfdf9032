"""A canvas app's message template, compiled into a program the page runs itself.

The generated page must need no server, so it cannot run Jinja. The template is parsed by
the same sandboxed Jinja as bot templates (so syntax errors, unknown names and filters read
the same), then only what the page renders exactly as Jinja would is kept: text,
`{{ name }}`, and `{% if %}`/`{% elif %}`/`{% else %}` over `name`, `not`, `and`, `or` and
`name == 'text'` (`!=`). The program is plain JSON:

    node    = "text" | {"var": name} | {"if": [[test, [node...]]...], "else": [node...]}
    test    = {"var": name} | {"not": test} | {"and": [test, test]} | {"or": [test, test]}
            | {"eq": [name, "text"]} | {"ne": [name, "text"]}

Values are strings (text, long text, number as typed, choice), booleans (toggles) and
lists (files); truth is Python's, which the page reproduces (an empty list is false).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError
from ..template_tokens import read_offset, tokens
from ..templates import TemplateCompiler, line_offset

Program = list[Any]

# Fields only a test may read: `{{ toggle }}` would render Python's `True`, the page `true`.
TEST_ONLY = frozenset({"toggle", "file"})
_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
)
_COMPARISONS = {"eq": "eq", "ne": "ne"}


def compile_program(source: str, kinds: Mapping[str, str]) -> Program:
    """The program of a template over fields named in `kinds` (name to field kind);
    TemplateError with the offset of the first thing the page could not render."""
    TemplateCompiler({}, kinds).compile(source)  # syntax, names and filters, as for bots
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:  # compile() has reported these already
        raise TemplateError(f"invalid template: {exc.message}", 0) from None
    return _Compiler(source, kinds).body(tree.body)


def render_program(program: Program, values: Mapping[str, Any]) -> str:
    """The text the page sends for these values: what `canvas-app.js` computes, in Python
    (tests compare it with Jinja's own rendering of the template)."""
    return "".join(_render(node, values) for node in program)


def _render(node: Any, values: Mapping[str, Any]) -> str:
    if isinstance(node, str):
        return node
    if "var" in node:
        return str(values[node["var"]])
    for test, body in node["if"]:
        if _holds(test, values):
            return render_program(body, values)
    return render_program(node["else"], values)


def _holds(test: dict[str, Any], values: Mapping[str, Any]) -> bool:
    if "var" in test:
        return bool(values[test["var"]])  # Jinja's truth: "", False and [] are false
    if "not" in test:
        return not _holds(test["not"], values)
    if "and" in test:
        return all(_holds(part, values) for part in test["and"])
    if "or" in test:
        return any(_holds(part, values) for part in test["or"])
    name, text = test["eq"] if "eq" in test else test["ne"]
    equal: bool = values[name] == text
    return equal == ("eq" in test)


class _Compiler:
    """Walks the parsed template, refusing what the page does not render."""

    def __init__(self, source: str, kinds: Mapping[str, str]) -> None:
        self.source = source
        self.kinds = kinds

    def body(self, body: list[nodes.Node]) -> Program:
        program: Program = []
        for node in body:
            if isinstance(node, nodes.Output):
                program += [self._output(child) for child in node.nodes]
            elif isinstance(node, nodes.If):
                program.append(self._if(node))
            else:
                self._refuse(node, f"{{% {_tag(node)} %}} cannot be used in a canvas app")
        return [part for part in program if part != ""]

    def _output(self, node: nodes.Node) -> Any:
        if isinstance(node, nodes.TemplateData):
            return node.data
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            return node.value
        if isinstance(node, nodes.Name):
            kind = self.kinds[node.name]
            if kind in TEST_ONLY:
                raise TemplateError(
                    f"a {kind} field cannot be put in the text",
                    read_offset(tokens(_ENV, self.source), node.name),
                    f"test it instead: {{% if {node.name} %}}...{{% endif %}}",
                )
            return {"var": node.name}
        self._refuse(node, "only a field's name can go between {{ and }} in a canvas app")
        raise AssertionError  # unreachable: _refuse raises

    def _if(self, node: nodes.If) -> dict[str, Any]:
        branches = [[self._test(node.test), self.body(node.body)]]
        branches += [[self._test(elif_.test), self.body(elif_.body)] for elif_ in node.elif_]
        return {"if": branches, "else": self.body(node.else_)}

    def _test(self, node: nodes.Node) -> dict[str, Any]:
        if isinstance(node, nodes.Name):
            return {"var": node.name}
        if isinstance(node, nodes.Not):
            return {"not": self._test(node.node)}
        if isinstance(node, nodes.And | nodes.Or):
            key = "and" if isinstance(node, nodes.And) else "or"
            return {key: [self._test(node.left), self._test(node.right)]}
        if isinstance(node, nodes.Compare) and _simple_comparison(node):
            name = node.expr.name  # type: ignore[attr-defined]  # checked just above
            return {_COMPARISONS[node.ops[0].op]: [name, node.ops[0].expr.value]}  # type: ignore[attr-defined]
        self._refuse(
            node,
            "a canvas app's {% if %} tests only a field, not, and, or, and name == 'text' (or !=)",
        )
        raise AssertionError

    def _refuse(self, node: nodes.Node, message: str) -> None:
        raise TemplateError(message, line_offset(self.source, node.lineno))


def _simple_comparison(node: nodes.Compare) -> bool:
    if not isinstance(node.expr, nodes.Name) or len(node.ops) != 1:
        return False
    operand = node.ops[0]
    return (
        operand.op in _COMPARISONS
        and isinstance(operand.expr, nodes.Const)
        and isinstance(operand.expr.value, str)
    )


_TAGS: dict[type[nodes.Node], str] = {nodes.For: "for", nodes.Assign: "set", nodes.Macro: "macro"}


def _tag(node: nodes.Node) -> str:
    return _TAGS.get(type(node), type(node).__name__.lower())
