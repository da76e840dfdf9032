"""Sandboxed Jinja templates: rendering, the plain-text fast path, the sandbox, load errors."""

from __future__ import annotations

import pickle
from typing import Any

import jinja2
import pytest

from engine.errors import RunError, TemplateError
from engine.spec.context import CONTEXT_NAMES
from engine.templates import JinjaTemplate, PlainText, TemplateCompiler

NO_UPER = "invalid template: no filter named 'uper'"
LANGUAGE = "did you mean 'language'?"
BROKEN = "Sorry, this bot could not build its answer. Its creator has been told."

PROMPTS = {
    "signature": "-- {{ bot.name }}",
    "framed": "[{% include 'signature' %}]",
    "shout": "{{ message | upper }}!",
}
CONTEXT: dict[str, Any] = {
    "message": "hello there",
    "turn": 2,
    "params": {"style": "pixel", "strength": 0.5},
    "history": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "Hello!"}],
    "attachments": [{"name": "a.png"}, {"name": "b.png"}],
    "vars": {},
    "bot": {"name": "demo", "description": "A demo"},
    "user": {"id": "u-1"},
}


@pytest.fixture
def compiler() -> TemplateCompiler:
    return TemplateCompiler(PROMPTS, CONTEXT_NAMES)


def render(compiler: TemplateCompiler, source: str, context: dict[str, Any] = CONTEXT) -> str:
    return compiler.compile(source, "routes[0].reply").render(context)


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("You said: {{ message }}", "You said: hello there"),
        ("{{ message | upper }}", "HELLO THERE"),
        ("{{ message | title }}", "Hello There"),
        ("{{ attachments | length }}", "2"),
        ("{{ attachments | map(attribute='name') | join(', ') }}", "a.png, b.png"),
        ("{{ params.style }}/{{ params['strength'] }}", "pixel/0.5"),
        ("{% if turn > 1 %}again{% else %}first{% endif %}", "again"),
        ("{{ 'yes' if params.style == 'pixel' }}", "yes"),
        ("{{ 'yes' if params.style == 'photo' }}", ""),
        ("{% for h in history %}{{ h.role }};{% endfor %}", "user;bot;"),
        ("{% set n = turn * 2 %}{{ n }}", "4"),
        ("{{ history[-1].content }}", "Hello!"),
        ("{{ range(3) | list }}", "[0, 1, 2]"),
        ("{# a comment #}text", "text"),
        ("{{ message.split(' ')[0] }}", "hello"),
        ("{{ '<b>' }}", "<b>"),  # no HTML escaping: answers are Markdown
        ("line\n{{ turn }}\n", "line\n2"),  # like Jinja, one trailing newline is dropped
        ("{% raw %}{{ not rendered }}{% endraw %}", "{{ not rendered }}"),
    ],
)
def test_rendering(compiler: TemplateCompiler, source: str, expected: str) -> None:
    assert render(compiler, source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('Hi{% include "signature" %}', "Hi-- demo"),
        ('{% include "framed" %}', "[-- demo]"),
        ("{% include 'shout' %}", "HELLO THERE!"),
        ('{% for n in [1, 2] %}{% include "signature" %}{% endfor %}', "-- demo-- demo"),
    ],
)
def test_includes_render_named_prompts_with_the_same_context(
    compiler: TemplateCompiler, source: str, expected: str
) -> None:
    assert render(compiler, source) == expected


# --- the plain-text fast path ------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["Hello!", "", "braces { alone } are fine", "50% off", "a # b", "line one\nline two"],
)
def test_text_without_markers_is_plain_and_ignores_the_context(
    compiler: TemplateCompiler, source: str
) -> None:
    template = compiler.compile(source)
    assert isinstance(template, PlainText)
    assert template.source == source
    assert template.render({}) == source
    assert template.render(CONTEXT) == source


@pytest.mark.parametrize("source", ["{{ 1 }}", "{% if true %}{% endif %}", "{# note #}"])
def test_any_marker_makes_a_jinja_template(compiler: TemplateCompiler, source: str) -> None:
    template = compiler.compile(source, "prompts.x")
    assert isinstance(template, JinjaTemplate)
    assert (template.source, template.loc) == (source, "prompts.x")


@pytest.mark.parametrize("text", ["Hello\n", "Hello\n\n", "Hello", "a\nb\n"])
def test_plain_text_renders_exactly_as_jinja_would(compiler: TemplateCompiler, text: str) -> None:
    """A `reply: |` block keeps its trailing newline in YAML; both paths drop one alike."""
    plain = compiler.compile(text).render(CONTEXT)
    jinja = compiler.compile("{{ '' }}" + text).render(CONTEXT)
    assert plain == jinja


# --- the sandbox -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        (
            "{{ message.__class__ }}",
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ message.__class__.__mro__[1].__subclasses__() }}",
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ ''.__class__.__base__ }}",
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ cycler.__init__.__globals__ }}",
            "access to attribute '__init__' of 'type' object is unsafe.",
        ),
        (
            "{{ history.append(1) }}",
            "access to attribute 'append' of 'list' object is unsafe.",
        ),
        (
            "{{ params.update({'style': 'x'}) }}",
            "access to attribute 'update' of 'dict' object is unsafe.",
        ),
        (
            "{{ params.clear() }}",
            "access to attribute 'clear' of 'dict' object is unsafe.",
        ),
    ],
)
def test_the_sandbox_refuses_escapes_at_render_time(
    compiler: TemplateCompiler, source: str, detail: str
) -> None:
    template = compiler.compile(source, "routes[3].reply")  # compiles: only rendering is refused
    with pytest.raises(RunError) as caught:
        template.render(CONTEXT)
    error = caught.value
    assert error.user_text == BROKEN
    assert error.detail == f"routes[3].reply: template refused by the sandbox: {detail}"
    assert str(error) == error.detail
    assert error.allow_retry is False


def test_the_sandbox_leaves_the_context_unchanged(compiler: TemplateCompiler) -> None:
    history = [{"role": "user", "content": "hi"}]
    with pytest.raises(RunError):
        render(compiler, "{{ history.append(1) }}", {**CONTEXT, "history": history})
    assert history == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ("{{ params.missing }}", "template failed: 'dict object' has no attribute 'missing'"),
        ("{{ message.nope }}", "template failed: 'str object' has no attribute 'nope'"),
        ("{{ history[5] }}", "template failed: list object has no element 5"),
        ("{{ vars.x.y }}", "template failed: 'dict object' has no attribute 'x'"),
        ("{{ params.missing | default('fine') }}x{{ params.gone }}", None),
        ("{{ 1 / 0 }}", "template failed: ZeroDivisionError('division by zero')"),
        ("{{ message + 1 }}", None),
        (
            "{{ range(1000000) | list | length }}",
            "template failed: OverflowError('Range too big. The sandbox blocks ranges larger "
            "than MAX_RANGE (100000).')",
        ),
    ],
)
def test_render_failures_become_run_errors(
    compiler: TemplateCompiler, source: str, detail: str | None
) -> None:
    with pytest.raises(RunError) as caught:
        render(compiler, source)
    assert caught.value.user_text == BROKEN
    assert caught.value.detail.startswith("routes[0].reply: template failed: ")
    if detail is not None:
        assert caught.value.detail == f"routes[0].reply: {detail}"


def test_default_filter_covers_a_missing_attribute(compiler: TemplateCompiler) -> None:
    assert render(compiler, "{{ params.missing | default('fine') }}") == "fine"
    assert render(compiler, "{{ params.missing is defined }}") == "False"


def test_a_known_name_missing_from_the_context_fails_at_render(compiler: TemplateCompiler) -> None:
    template = compiler.compile("{{ language }}")  # known name: it compiles
    with pytest.raises(RunError) as caught:
        template.render({})
    assert caught.value.detail == "template: template failed: 'language' is undefined"


# --- load-time errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "offset", "hint"),
    [
        ("Hi {{ mesage }}", "unknown variable 'mesage'", 6, "did you mean 'message'?"),
        ("{{ x }}", "unknown variable 'x'", 3, None),
        (
            "{{ params.a }} {{ histroy }}",
            "unknown variable 'histroy'",
            18,
            "did you mean 'history'?",
        ),
        (
            "{% for m in mesages %}{% endfor %}",
            "unknown variable 'mesages'",
            12,
            "did you mean 'message'?",
        ),
        ("{{ loop }}", "unknown variable 'loop'", 3, None),
        # Found by the template's tokens, not by searching its text (issue 8.4).
        (
            "{% if language %}Answer in ({{ lang }}).{% endif %}",
            "unknown variable 'lang'",
            31,
            LANGUAGE,
        ),
        ("{{ 'lang' }} {{ user.lang }} {{ lang }}", "unknown variable 'lang'", 32, LANGUAGE),
        ("{{ message | truncate(lang=1) }}{{ lang }}", "unknown variable 'lang'", 35, LANGUAGE),
        (
            '{{ "signatur" }}{% include "signatur" %}',
            "unknown prompt 'signatur'",
            28,
            "did you mean 'signature'?",
        ),
        (
            '{% include "signatur" %}',
            "unknown prompt 'signatur'",
            12,
            "did you mean 'signature'?",
        ),
        ('{% include "zzz" %}', "unknown prompt 'zzz'", 12, "prompts: framed, shout, signature"),
        (
            "{{ message ",
            "invalid template: unexpected end of template, expected 'end of print statement'",
            0,
            None,
        ),
        (
            "first line\nsecond {{ message + }}",
            "invalid template: unexpected 'end of print statement'",
            11,
            None,
        ),
        ("a\nb\n{% endif %}", "invalid template: encountered unknown tag 'endif'", 4, None),
        # Jinja itself finds these only when it generates code; the engine at load.
        (
            "{% for loop in history %}{% endfor %}",
            "invalid template: can't assign to special loop variable in for-loop target",
            0,
            None,
        ),
        (
            "x\n{% block a %}{% endblock %}{% block a %}{% endblock %}",
            "invalid template: block 'a' defined twice",
            2,
            None,
        ),
        ("{{ message | uper }}", NO_UPER, 13, "did you mean 'upper'?"),
        ("x\n{{ message | uper }}", NO_UPER, 15, "did you mean 'upper'?"),
        ("{{ message | zzzzz }}", "invalid template: no filter named 'zzzzz'", 13, None),
        ("{{ uper_text | uper }}", NO_UPER, 15, "did you mean 'upper'?"),
        ("{{ message.uper | uper }}", NO_UPER, 18, "did you mean 'upper'?"),
        (
            "{{ message is string and fooo is fooo }}",
            "invalid template: no test named 'fooo'",
            33,
            None,
        ),
        # Jinja itself would only fail these when the branch runs; the engine fails at load.
        ("{% if turn %}{{ message | uper }}{% endif %}", NO_UPER, 26, "did you mean 'upper'?"),
        ("{{ message | uper if turn }}", NO_UPER, 13, "did you mean 'upper'?"),
        ("{% filter uper %}x{% endfilter %}", NO_UPER, 10, "did you mean 'upper'?"),
        ("{% if message is fooo %}{% endif %}", "invalid template: no test named 'fooo'", 17, None),
        (
            "{{ message is stringg }}",
            "invalid template: no test named 'stringg'",
            14,
            "did you mean 'string'?",
        ),
    ],
)
def test_compile_errors(
    compiler: TemplateCompiler, source: str, message: str, offset: int, hint: str | None
) -> None:
    with pytest.raises(TemplateError) as caught:
        compiler.compile(source)
    error = caught.value
    assert (error.message, error.offset, error.hint) == (message, offset, hint)


def test_include_without_any_prompts() -> None:
    with pytest.raises(TemplateError) as caught:
        TemplateCompiler({}, CONTEXT_NAMES).compile('{% include "x" %}')
    assert (caught.value.message, caught.value.hint) == (
        "unknown prompt 'x'",
        "prompts: none are defined",
    )


def test_only_the_given_context_names_are_known() -> None:
    compiler = TemplateCompiler({}, ["only"])
    assert compiler.compile("{{ only }}").render({"only": 1}) == "1"
    with pytest.raises(TemplateError, match="unknown variable 'message'"):
        compiler.compile("{{ message }}")


def test_every_documented_context_name_is_accepted(compiler: TemplateCompiler) -> None:
    for name in sorted(CONTEXT_NAMES):
        compiler.compile("{{ %s }}" % name)  # noqa: UP031 - the braces are Jinja's


# --- when the code is generated ----------------------------------------------------------


def test_code_is_generated_at_the_first_render_only(
    compiler: TemplateCompiler, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated: list[str] = []
    original = jinja2.Environment.from_string

    def counting(self: jinja2.Environment, source: str, *args: Any, **kwargs: Any) -> Any:
        generated.append(source)
        return original(self, source, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "from_string", counting)
    template = compiler.compile("{{ message | upper }}")
    assert generated == []  # loading checks, and generates nothing
    assert template.render(CONTEXT) == template.render(CONTEXT) == "HELLO THERE"
    assert generated == ["{{ message | upper }}"]


def test_a_pickled_template_renders_the_same(compiler: TemplateCompiler) -> None:
    """Folders loaded by several processes come back pickled, their code not included."""
    template = compiler.compile("{% include 'framed' %} {{ message }}")
    before = template.render(CONTEXT)
    copy = pickle.loads(pickle.dumps(template))
    assert isinstance(copy, JinjaTemplate)
    assert copy.render(CONTEXT) == before == "[-- demo] hello there"


_PROMPTS = {"sig": "\n\n— Acme\r\nSupport\n", "hi": "Hi {{ message }}\n", "ws": "  x  \n\n"}


@pytest.mark.parametrize(
    "source",
    [
        'A{% include "sig" %}B',
        '{% for i in [1, 2] %}{% include "sig" %}{{ i }}{% endfor %}',
        '{% include "hi" %}|{% include "ws" %}!',
        '{% if message %}{% include "sig" ignore missing %}{% endif %}x\n',
    ],
)
def test_a_plain_prompt_included_is_written_as_jinja_writes_it(source: str) -> None:
    """Includes of marker-less prompts are replaced by their text when the code is built:
    the same output as Jinja's own include, line ends and trailing newline included."""
    ours = TemplateCompiler(_PROMPTS, ["message"]).build(source).render({"message": "m"})
    jinjas = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        loader=jinja2.DictLoader(_PROMPTS),
        keep_trailing_newline=False,
    )
    assert ours == jinjas.from_string(source).render({"message": "m"})
