"""The load-time walk over a template's frames gives Jinja's own answers, without its code.

Jinja's reference is `meta.find_undeclared_variables` (its code generator, tracking names)
and `Environment.compile` (which fails where code generation fails). Every template below,
written or generated, must get the same names and the same verdict from both.
"""

from __future__ import annotations

import random

import jinja2
import pytest
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.template_scope import usage

ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, loader=jinja2.DictLoader({"sig": "x", "lib": "y"})
)

WRITTEN = [
    "{{ message }}",
    "{{ a.b[c] ~ d | upper }}{{ e if f else g }}",
    "{% set x = 1 %}{{ x }}{{ y }}",
    "{{ y }}{% set y = 2 %}{{ y }}",
    "{% if a %}{% set b = 1 %}{% endif %}{{ b }}",
    "{% if a %}{% set b = 1 %}{% elif c %}{% set b = 2 %}{% else %}{{ d }}{% endif %}{{ b }}",
    "{% for m in history %}{{ m.role }}{{ loop.index }}{{ outer }}{% else %}{{ none_left }}"
    "{% endfor %}",
    "{% for m in h if m.x > limit %}{{ m }}{% endfor %}",
    "{% for a, b in pairs %}{{ a }}{{ b }}{{ c }}{% endfor %}",
    "{% for m in h recursive %}{{ loop(m.children) }}{% endfor %}",
    "{% for x in y %}{% set x2 = x %}{% endfor %}{{ x2 }}",
    "{% set x2 = 0 %}{% for x in y %}{% set x2 = x %}{{ x2 }}{% endfor %}",
    "{% macro greet(name, caller=none) %}{{ name }}{{ caller() if caller }}{{ kwargs }}"
    "{{ varargs }}{{ outside }}{% endmacro %}{{ greet('x') }}",
    "{% macro m(a, b=c) %}{{ a }}{{ b }}{{ d }}{% endmacro %}",
    "{% call greet(who) %}inner {{ z }}{% endcall %}",
    "{% macro greet() %}{{ caller() }}{% endmacro %}{% call(item) greet() %}{{ item }}"
    "{{ w }}{% endcall %}",
    "{% with a = b %}{{ a }}{{ c }}{% endwith %}",
    "{% with %}{% set a = 1 %}{{ a }}{% endwith %}{{ a }}",
    "{% filter upper %}{{ f }}{% endfilter %}",
    "{% set block %}{{ inside }}{% endset %}{{ block }}",
    "{% set caught | upper %}{{ inside }}{% endset %}{{ caught }}",
    "{% block main %}{{ in_block }}{{ self }}{% endblock %}",
    "{% block main %}{{ super }}{% endblock %}{{ self.main() }}",
    "{{ self }}",
    "{% set ns = namespace(n=0) %}{% for i in items %}{% set ns.n = ns.n + i %}{% endfor %}"
    "{{ ns.n }}",
    "{% import 'lib' as s %}{{ s }}",
    "{% from 'lib' import a as b, c %}{{ b }}{{ c }}{{ d }}",
    "{% include 'sig' %}{{ after }}",
    "{% include ['sig', other] %}",
    "{% autoescape true %}{{ esc }}{% set e2 = 1 %}{% endautoescape %}{{ e2 }}",
    "{% if t %}{% for i in r %}{{ i }}{{ j }}{% endfor %}{% endif %}",
    "{{ range(3) | list }}{{ lipsum() }}{{ dict(a=1) }}{{ cycler }}{{ joiner }}",
    "{% for i in range(n) %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "{% if x %}{% extends 'sig' %}{% endif %}",
    "{{ loop }}",
    "{{ caller }}{{ kwargs }}{{ varargs }}",
    "{% macro m(caller=1) %}{{ caller }}{% endmacro %}",
]

# Where only code generation fails: the walk must fail the same way, at load.
FAILING = [
    "{% block a %}{% endblock %}{% block a %}{% endblock %}",
    "{% for x in y %}{% extends 'sig' %}{% endfor %}",
    "{% with %}{% extends 'sig' %}{% endwith %}",
    "{% block a %}{% extends 'sig' %}{% endblock %}",
    "{% for loop in y %}{% endfor %}",
    "{% for x in y %}{% set loop = 1 %}{% endfor %}",
    "{% macro m(caller) %}{{ caller() }}{% endmacro %}",
    "{% macro m(caller, b=1) %}{{ caller() }}{% endmacro %}",
]


def _jinja(source: str) -> set[str] | str:
    """Jinja's answer: the names its code generator resolves, or its compile error."""
    try:
        ENV.compile(source)
    except jinja2.TemplateAssertionError as exc:
        return f"fails: {exc.message}"
    return meta.find_undeclared_variables(ENV.parse(source))


def _ours(source: str) -> set[str] | str:
    try:
        return usage(ENV.parse(source)).reads - ENV.globals.keys()
    except jinja2.TemplateAssertionError as exc:
        return f"fails: {exc.message}"


@pytest.mark.parametrize("source", WRITTEN + FAILING)
def test_written_templates_get_jinjas_answer(source: str) -> None:
    assert _ours(source) == _jinja(source)


@pytest.mark.parametrize("source", FAILING)
def test_what_only_code_generation_refuses_is_refused(source: str) -> None:
    assert str(_jinja(source)).startswith("fails: ")


def test_generated_templates_get_jinjas_answer() -> None:
    """Random nestings of every scope Jinja has; a difference names the template."""
    rng = random.Random(7)
    answers = [(source, _ours(source), _jinja(source)) for source in _templates(rng, 800)]
    assert [answer for answer in answers if answer[1] != answer[2]] == []
    refused = sum(isinstance(jinja, str) for _, _, jinja in answers)
    assert 0 < refused < len(answers) / 2  # both verdicts are well represented


def test_references_and_filters_are_collected_in_order() -> None:
    found = usage(ENV.parse("{{ a | upper }}{% include 'sig' %}{% if b is odd %}{% endif %}"))
    assert [node.name for node in found.filters] == ["upper", "odd"]
    assert found.references == ["sig"]
    assert usage(ENV.parse("{% include name %}")).references == [None]


NAMES = ["a", "b", "x", "loop", "caller", "kwargs", "varargs", "self", "super", "m"]


def _name(rng: random.Random) -> str:
    return rng.choice(NAMES[:3] + ["x"]) if rng.random() < 0.7 else rng.choice(NAMES)


def _expr(rng: random.Random) -> str:
    name = _name(rng)
    return rng.choice([name, f"{name}.attr", f"{name} ~ {_name(rng)}", f"{name}()"])


def _body(rng: random.Random, depth: int) -> str:
    return "".join(_statement(rng, depth) for _ in range(rng.randint(0, 3)))


def _statement(rng: random.Random, depth: int) -> str:
    kinds = ["out", "set"] + (
        ["if", "for", "with", "macro", "call", "filter", "setblock", "block"] if depth else []
    )
    kind, inner = rng.choice(kinds), depth - 1
    target = rng.choice(["a", "b", "x", "y"])
    if kind == "out":
        return "{{ %s }}" % _expr(rng)  # noqa: UP031 - the braces are Jinja's
    if kind == "set":
        return f"{{% set {target} = {_expr(rng)} %}}"
    if kind == "if":
        otherwise = f"{{% else %}}{_body(rng, inner)}" if rng.random() < 0.5 else ""
        return f"{{% if {_expr(rng)} %}}{_body(rng, inner)}{otherwise}{{% endif %}}"
    if kind == "for":
        test = f" if {_expr(rng)}" if rng.random() < 0.3 else ""
        otherwise = f"{{% else %}}{_body(rng, inner)}" if rng.random() < 0.3 else ""
        head = f"{{% for {target} in {_expr(rng)}{test} %}}"
        return f"{head}{_body(rng, inner)}{otherwise}{{% endfor %}}"
    if kind == "with":
        return f"{{% with {target} = {_expr(rng)} %}}{_body(rng, inner)}{{% endwith %}}"
    if kind == "macro":
        args = rng.choice(["", "p", "p, q=b", "p, caller=none"])
        return f"{{% macro m({args}) %}}{_body(rng, inner)}{{% endmacro %}}"
    if kind == "call":
        return f"{{% call m() %}}{_body(rng, inner)}{{% endcall %}}"
    if kind == "filter":
        return f"{{% filter upper %}}{_body(rng, inner)}{{% endfilter %}}"
    if kind == "setblock":
        return f"{{% set {target} %}}{_body(rng, inner)}{{% endset %}}"
    return f"{{% block b{rng.randint(0, 9)} %}}{_body(rng, inner)}{{% endblock %}}"


def _templates(rng: random.Random, count: int) -> list[str]:
    return [_body(rng, depth=3) or "{{ a }}" for _ in range(count)]
