"""The names a Jinja template reads from the context, found without generating its code.

Jinja learns which names a template reads while it generates the template's Python code:
each scope (the template, a loop body, a macro, a `with` or `set` block...) is a frame, and
Jinja's `idtracking` module resolves the names of each frame. Generating and compiling that
code is about three quarters of the cost of compiling a template, and a bots folder is
checked at every start, so the loader walks the same frames here, with the same
`idtracking`, and leaves code generation to a template's first render.

The errors Jinja raises only while generating code are raised here too, so a template
that passes this walk also compiles. `tests/test_template_scope.py` holds the walk to
Jinja's own answers, template by template.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import meta, nodes
from jinja2.compiler import find_undeclared
from jinja2.exceptions import TemplateAssertionError
from jinja2.idtracking import VAR_LOAD_RESOLVE, Symbols
from jinja2.nodes import Node

# Nodes that store a name or open a frame; a template without any reads every name it loads.
# Sets of exact classes: the engine's environment has no extensions, which alone make other
# statements (such as OverlayScope) or subclasses.
_SCOPED = {
    nodes.For,
    nodes.Macro,
    nodes.CallBlock,
    nodes.With,
    nodes.FilterBlock,
    nodes.Scope,
    nodes.AssignBlock,
    nodes.Assign,
    nodes.Block,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
}
_REFERENCES = {nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends}
_FILTERS = {nodes.Filter, nodes.Test}


@dataclass
class Usage:
    """What a template uses: context names, filters and tests, other templates."""

    reads: set[str] = field(default_factory=set)
    filters: list[nodes.Filter | nodes.Test] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)  # None: a computed name


def usage(tree: nodes.Template) -> Usage:
    """One pass over the tree; the frame walk only for templates with scopes or `set`.

    Raises TemplateAssertionError where Jinja's code generator would.
    """
    found = Usage()
    loads: set[str] = set()
    referencing: list[nodes.Node] = []
    scoped = False
    for node in _preorder(tree):
        kind = type(node)
        if kind is nodes.Name:
            loads.add(node.name)  # type: ignore[attr-defined]
        elif kind in _FILTERS:
            found.filters.append(node)  # type: ignore[arg-type]
        elif kind in _SCOPED:
            scoped = True
        if kind in _REFERENCES:
            referencing.append(node)
    if referencing:  # Jinja's own reading of which names are static
        found.references = list(meta.find_referenced_templates(nodes.Template(referencing)))
    found.reads = context_reads(tree) if scoped or "self" in loads else loads
    return found


def _preorder(tree: nodes.Node) -> Iterator[nodes.Node]:
    """`Node.find_all`'s order, several times faster than its generic field iteration."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        children: list[nodes.Node] = []
        for name in node.fields:
            value = getattr(node, name, None)
            if type(value) is list:
                children += (item for item in value if isinstance(item, Node))
            elif isinstance(value, Node):
                children.append(value)
        stack += reversed(children)


def context_reads(tree: nodes.Template) -> set[str]:
    """Every name some frame of the template resolves from the render context.

    Raises TemplateAssertionError where Jinja's code generator would.
    """
    walk = _FrameWalk()
    walk.template(tree)
    return walk.reads


class _FrameWalk:
    """The frames of `jinja2.compiler.CodeGenerator`, opened where it opens them."""

    def __init__(self) -> None:
        self.reads: set[str] = set()

    def template(self, tree: nodes.Template) -> None:
        blocks: dict[str, nodes.Block] = {}
        for block in tree.find_all(nodes.Block):
            if block.name in blocks:
                _fail(f"block {block.name!r} defined twice", block.lineno)
            blocks[block.name] = block
        root = Symbols()
        if "self" in find_undeclared(tree.body, ("self",)):
            root.declare_parameter("self")
        self._enter(root, tree)
        self._statements(tree.body, root, toplevel=True)
        for block in blocks.values():  # each block is a frame of its own, without a parent
            symbols = Symbols()
            for special in sorted(find_undeclared(block.body, ("self", "super"))):
                symbols.declare_parameter(special)
            self._enter(symbols, block)
            self._statements(block.body, symbols, toplevel=False)

    def _enter(self, symbols: Symbols, node: nodes.Node, **branch: Any) -> None:
        """Analyse one frame, as `CodeGenerator.enter_frame` would see it."""
        symbols.analyze_node(node, **branch)
        self.reads.update(
            param for action, param in symbols.loads.values() if action == VAR_LOAD_RESOLVE
        )

    def _statements(self, body: Iterable[nodes.Node], symbols: Symbols, toplevel: bool) -> None:
        for node in body:
            self._statement(node, symbols, toplevel)

    def _statement(self, node: nodes.Node, symbols: Symbols, toplevel: bool) -> None:
        if isinstance(node, nodes.For):
            self._for(node, symbols)
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            self._macro(node, symbols)
        elif isinstance(node, nodes.With | nodes.FilterBlock | nodes.Scope | nodes.AssignBlock):
            inner = Symbols(symbols)
            self._enter(inner, node)
            self._statements(node.body, inner, toplevel=False)
        elif isinstance(node, nodes.If):  # a "soft" frame: the same symbols
            self._statements((*node.body, *node.elif_, *(node.else_ or ())), symbols, toplevel)
        elif isinstance(node, nodes.ScopedEvalContextModifier):
            self._statements(node.body, symbols, toplevel)
        elif isinstance(node, nodes.Extends) and not toplevel:
            _fail("cannot use extend from a non top-level scope", node.lineno)
        # Blocks are walked as frames of their own; other statements hold no statements.

    def _for(self, node: nodes.For, symbols: Symbols) -> None:
        loop = Symbols(symbols)
        uses_loop = "loop" in find_undeclared(node.iter_child_nodes(only=("body",)), ("loop",))
        if node.recursive or uses_loop or any(b.scoped for b in node.find_all(nodes.Block)):
            loop.declare_parameter("loop")
        for name in node.find_all(nodes.Name):
            if name.ctx == "store" and name.name == "loop":
                _fail("Can't assign to special loop variable in for-loop target", name.lineno)
        self._enter(loop, node, for_branch="body")
        if node.test:
            self._enter(Symbols(symbols), node, for_branch="test")
        self._statements(node.body, loop, toplevel=False)
        if node.else_:
            otherwise = Symbols(symbols)
            self._enter(otherwise, node, for_branch="else")
            self._statements(node.else_, otherwise, toplevel=False)

    def _macro(self, node: nodes.Macro | nodes.CallBlock, symbols: Symbols) -> None:
        inner = Symbols(symbols)
        inner.analyze_node(node)
        named = [arg.name for arg in node.args]
        undeclared = find_undeclared(node.body, ("caller", "kwargs", "varargs"))
        if "caller" in undeclared:
            if "caller" not in named:
                inner.declare_parameter("caller")
            elif named.index("caller") - len(named) + len(node.defaults) < 0:
                _fail(
                    'When defining macros or call blocks the special "caller" argument '
                    "must be omitted or be given a default.",
                    node.lineno,
                )
        for special in ("kwargs", "varargs"):
            if special in undeclared and special not in named:
                inner.declare_parameter(special)
        self._enter(inner, node)
        self._statements(node.body, inner, toplevel=False)


def _fail(message: str, lineno: int) -> None:
    raise TemplateAssertionError(message, lineno)
