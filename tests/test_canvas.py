"""Canvas apps in YAML: their errors read like bot files', `validate` covers them, and
`canvas build` writes one self-contained page that talks only to `window.Poe`."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator

from engine import schema
from engine.canvas.build import VENDOR, VENDORED, build_html, page_config
from engine.canvas.loader import CompiledCanvas, load_canvas_text
from engine.canvas.template import compile_program, render_program
from engine.cli import main
from engine.errors import SpecError, TemplateError, place
from engine.js_patterns import browser_pattern
from engine.loader.yaml_marks import parse
from engine.patterns import PatternError

from .conftest import BOTS_DIR, EXAMPLE_BOTS, REPO

EXAMPLE = REPO / "canvas" / "ask-acme.yaml"
LOCAL_BOTS = {"acme-help", "hello"}


def problems(text: str, bots: set[str] | None = LOCAL_BOTS) -> list[str]:
    app, found = load_canvas_text(text, "canvas/app.yaml", bots)
    assert (app is None) == any(not p.is_warning for p in found)
    return [str(p) for p in sorted(found, key=place)]


def loaded(text: str) -> CompiledCanvas:
    app, found = load_canvas_text(text, "canvas/app.yaml", LOCAL_BOTS)
    assert app is not None, [str(p) for p in found]
    return app


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


# --- errors, told as for bot files --------------------------------------------------------


def test_an_unknown_kind_is_told_at_its_value_with_the_kinds_and_a_guess() -> None:
    text = "title: T\ninputs:\n  - name: q\n    kind: textfield\nmessage: '@hello {{ q }}'\n"
    assert problems(text) == [
        "canvas/app.yaml:4:11: inputs[0].kind: unknown kind 'textfield'; expected one of "
        "'text', 'long_text', 'number', 'choice', 'toggle', 'file' (did you mean 'text'?)"
    ]


def test_a_missing_kind_is_a_missing_key() -> None:
    text = "title: T\ninputs:\n  - name: q\nmessage: '@hello'\n"
    assert problems(text) == ["canvas/app.yaml:3:5: inputs[0]: missing required key 'kind'"]


def test_unknown_keys_get_the_bots_typo_hints_at_every_level() -> None:
    text = (
        "title: T\nsumbit: Go\ninputs:\n  - name: q\n    kind: text\n    placholder: x\n"
        "message: '@hello {{ q }}'\nanswer: {suggested_replys: [More]}\n"
    )
    assert problems(text) == [
        "canvas/app.yaml:2:1: sumbit: unknown key 'sumbit' (did you mean 'submit'?)",
        "canvas/app.yaml:6:5: inputs[0].placholder: unknown key 'placholder' "
        "(did you mean 'placeholder'?)",
        "canvas/app.yaml:8:10: answer.suggested_replys: unknown key 'suggested_replys' "
        "(did you mean 'suggested_replies'?)",
    ]


def test_a_missing_message_is_reported() -> None:
    assert problems("title: T\n") == ["canvas/app.yaml:1:1: missing required key 'message'"]


def test_a_pattern_re2_refuses_is_shown_with_a_caret() -> None:
    text = "title: T\ninputs:\n  - {name: q, kind: text, pattern: '(a'}\nmessage: '@hello'\n"
    assert problems(text) == [
        "canvas/app.yaml:3:37: inputs[0].pattern: invalid regular expression: missing ), "
        "unterminated group\n    (a\n    ^"
    ]


def test_a_pattern_browsers_read_differently_is_refused_with_what_to_write() -> None:
    text = "title: T\ninputs:\n  - {name: q, kind: text, pattern: 'a\\-b'}\nmessage: '@hello'\n"
    assert problems(text) == [
        "canvas/app.yaml:3:38: inputs[0].pattern: invalid regular expression: \\- is not "
        "understood the same way by browsers (browsers check this pattern with JavaScript's "
        "RegExp, which reads a smaller syntax than RE2; write - without the backslash)"
        "\n    a\\-b\n     ^"
    ]


def test_template_errors_are_located_inside_the_message() -> None:
    text = (
        "title: T\ninputs:\n  - {name: question, kind: long_text}\n"
        "  - {name: urgent, kind: toggle}\n"
        "message: '@hello {{ qestion }}'\n"
    )
    assert problems(text) == [
        "canvas/app.yaml:5:21: message: unknown variable 'qestion' (did you mean 'question'?)"
        "\n    @hello {{ qestion }}\n              ^"
    ]
    toggle = text.replace("qestion", "urgent")
    assert problems(toggle) == [
        "canvas/app.yaml:5:21: message: a toggle field cannot be put in the text "
        "(test it instead: {% if urgent %}...{% endif %})\n    @hello {{ urgent }}\n              ^"
    ]


def test_the_message_template_is_checked_even_when_other_keys_are_wrong() -> None:
    text = "title: T\nsumbit: Go\ninputs: [{name: q, kind: text}]\nmessage: '@hello {{ qq }}'\n"
    assert [p.split(": ")[1] for p in problems(text)] == ["sumbit", "message"]


def test_the_message_must_name_a_bot_first() -> None:
    assert problems("title: T\nmessage: hello there\n") == [
        "canvas/app.yaml:2:10: message: the message must start with @ and the bot's name "
        "(like '@acme-help {{ question }}': Poe sends it to that bot)"
    ]


def test_input_names_are_used_once_and_defaults_keep_their_rules() -> None:
    text = (
        "title: T\ninputs:\n  - {name: n, kind: number, max: 5, default: 7}\n"
        "  - {name: n, kind: text}\n  - {name: code, kind: text, pattern: '[A-Z]+', default: abc}\n"
        "message: '@hello'\n"
    )
    assert problems(text) == [
        "canvas/app.yaml:3:46: inputs[0].default: the default is outside min and max "
        "(the form would start invalid)",
        "canvas/app.yaml:4:12: inputs[1].name: input name 'n' is already used by inputs[0] "
        "(each input needs its own name: the message template reads it)",
        "canvas/app.yaml:5:58: inputs[2].default: the default does not match the pattern "
        "(the form would start invalid)",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{name: q, kind: choice, options: [a, b], default: c}", "default 'c' is not one of"),
        ("{name: q, kind: text, min_length: 5, max_length: 2}", "min_length 5 is above"),
        ("{name: q, kind: number, min: 5, max: 2}", "min 5 is above max 2"),
        ("{name: 2q, kind: text}", "got '2q' (a string); expected text matching"),
        ("{name: q, kind: file, max_files: 0}", "input should be greater than or equal to 1"),
    ],
)
def test_field_rules_that_contradict_themselves_are_errors(body: str, message: str) -> None:
    found = problems(f"title: T\ninputs:\n  - {body}\nmessage: '@hello'\n")
    assert len(found) == 1 and message in found[0], found


# --- the bot the message names -------------------------------------------------------------


def test_a_bot_that_is_not_local_is_a_warning_with_a_guess() -> None:
    app, found = load_canvas_text("title: T\nmessage: '@acme-hlp hi'\n", "c.yaml", LOCAL_BOTS)
    assert app is not None and app.bot == "acme-hlp"
    assert [str(p) for p in found] == [
        "c.yaml:2:10: warning: message: '@acme-hlp' is not one of the local bots; inside Poe "
        "it must be a bot there (did you mean 'acme-help'?)"
    ]


def test_bots_are_matched_without_regard_to_case_as_poe_does() -> None:
    assert problems("title: T\nmessage: '@ACME-Help hi'\n") == []


def test_without_a_bots_folder_no_bot_is_questioned() -> None:
    assert problems("title: T\nmessage: '@Anything hi'\n", bots=None) == []


# --- the message template ----------------------------------------------------------------------

KINDS = {"q": "text", "topic": "choice", "urgent": "toggle", "photo": "file", "n": "number"}
TEMPLATES = [
    "@hello {{ q }}",
    "@hello {{ q }}{% if urgent %} (urgent){% endif %}\n",
    "@hello {% if topic == 'Refund' and not photo %}R{% elif photo or n %}P{% else %}-{% endif %}",
    "@hello {%- if topic != 'a' %}  {{ topic }} {% endif -%}  !",
    "@hello {{ 'quoted' }} {{ n }}",
]
VALUES: dict[str, list[Any]] = {
    "q": ["", "hi there"],
    "topic": ["", "Refund", "a"],
    "urgent": [False, True],
    "photo": [[], ["photo.png"]],
    "n": ["", "0", "12"],
}


@pytest.mark.parametrize("source", TEMPLATES)
def test_the_page_program_renders_exactly_what_jinja_renders(source: str) -> None:
    program = compile_program(source, KINDS)
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source)
    for combination in itertools.product(*VALUES.values()):
        values = dict(zip(VALUES, combination, strict=True))
        assert render_program(program, values) == template.render(values), values


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ q | upper }}", "only a field's name can go between {{ and }}"),
        ("{% for x in q %}{% endfor %}", "{% for %} cannot be used in a canvas app"),
        ("{% if n > 1 %}x{% endif %}", "{% if %} tests only a field"),
        ("{{ photo }}", "a file field cannot be put in the text"),
        ("{{ nope }}", "unknown variable 'nope'"),
    ],
)
def test_what_the_page_cannot_render_is_refused(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        compile_program(source, KINDS)


# --- patterns, the same in RE2 and in the browser --------------------------------------------

ACCEPTED = [r"^[A-Z]{2}\d{6}$", r"(?i)acme", r"[\-a-z]+", r"\b\w+\b", r"a{2,3}?", r"\x41\/"]
REFUSED = [r"a{", r"a}", r"[]a]", r"\-", r"\pL", r"(?s).", r"(?P<x>a)", r"[[:alpha:]]", r"\A"]


def test_accepted_patterns_compile_in_javascript_and_refused_ones_name_the_construct() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    shown = [[p.source, p.flags] for p in map(browser_pattern, ACCEPTED)]
    for pattern in REFUSED:
        with pytest.raises(PatternError, match="not understood the same way by browsers"):
            browser_pattern(pattern)
    script = (
        "for (const [s, f] of JSON.parse(process.argv[1])) new RegExp('^(?:' + s + ')$', f);"
        "console.log('ok')"
    )
    completed = subprocess.run(
        [node, "-e", script, json.dumps(shown)], capture_output=True, text=True, timeout=30
    )
    assert completed.stdout == "ok\n", completed.stderr
    assert browser_pattern("(?i)acme") == ("acme", "iu")


# --- validate ------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A creator's folder: the example bots in bots/, the example canvas app in canvas/."""
    shutil.copytree(BOTS_DIR, tmp_path / "bots")
    (tmp_path / "canvas").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "canvas" / "ask-acme.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_validate_without_paths_checks_bots_and_canvas(project: Path) -> None:
    (project / "canvas" / "typo.yaml").write_text("title: T\nmessage: '@acme-hlp hi'\n")
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert "canvas/typo.yaml:2:10: warning: message: '@acme-hlp' is not one of the local bots" in (
        result.output
    )
    files = len(EXAMPLE_BOTS) + 2  # the example bots, ask-acme.yaml and typo.yaml
    assert result.output.splitlines()[-1].startswith(f"{files} files: 0 errors, ")


def test_validate_reads_a_file_in_a_canvas_folder_as_a_canvas_app(project: Path) -> None:
    (project / "canvas" / "broken.yaml").write_text("title: T\nmesage: '@hello'\n")
    result = run("validate", "canvas/broken.yaml")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "canvas/broken.yaml:1:1: missing required key 'message'",
        "canvas/broken.yaml:2:1: mesage: unknown key 'mesage' (did you mean 'message'?)",
        "1 file: 2 errors, 0 warnings",
    ]


def test_validate_without_a_canvas_folder_checks_only_bots(project: Path) -> None:
    shutil.rmtree(project / "canvas")
    result = run("validate")
    assert result.output.splitlines()[-1].startswith(f"{len(EXAMPLE_BOTS)} files: 0 errors, ")


def test_the_example_canvas_app_is_valid_against_the_example_bots() -> None:
    app, found = load_canvas_text(EXAMPLE.read_text(), str(EXAMPLE), {"acme-help"})
    assert found == [] and app is not None
    assert app.bot == "acme-help"


# --- canvas build --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page() -> str:
    app, found = load_canvas_text(EXAMPLE.read_text(), str(EXAMPLE), None)
    assert app is not None, found
    return build_html(app)


def _own_markup(html: str) -> str:
    """The page without the inlined scripts' code: what it loads is said in its markup."""
    return re.sub(r"<script>.*?</script>", "<script></script>", html, flags=re.DOTALL)


def test_canvas_build_writes_one_file_per_app(project: Path) -> None:
    result = run("canvas", "build", "-o", "out")
    assert (result.exit_code, result.output) == (0, "wrote out/ask-acme.html\n")
    assert sorted(p.name for p in (project / "out").iterdir()) == ["ask-acme.html"]


def test_canvas_build_writes_nothing_when_a_file_has_an_error(project: Path) -> None:
    (project / "canvas" / "bad.yaml").write_text("title: T\nmessage: '@hello {{ x }}'\n")
    result = run("canvas", "build", "-o", "out")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "nothing written: 1 error in the canvas files"
    assert not (project / "out").exists()


def test_the_page_loads_no_network_resource(page: str) -> None:
    markup = _own_markup(page)
    assert re.findall(r"\b(?:src|href|action|srcset)\s*=", markup) == []
    assert re.findall(r"https?:|//[\w.-]+\.\w", markup) == []
    assert "<link" not in markup and "@import" not in markup and "url(" not in markup
    scripts = re.findall(r"<script>\n(.*?)</script>", page, flags=re.DOTALL)
    assert len(scripts) == 3  # marked, DOMPurify, the app: all inline
    for code in scripts:
        for forbidden in ("fetch(", "XMLHttpRequest", "WebSocket", "sendBeacon", "EventSource"):
            assert forbidden not in code
        assert re.search(r"\bimport\s*\(|^\s*import\s", code, flags=re.MULTILINE) is None
        assert "sourceMappingURL" not in code


def test_the_vendored_libraries_are_inlined_unchanged(page: str) -> None:
    for name in VENDORED:
        original = (VENDOR / name).read_text(encoding="utf-8")
        code = re.sub(r"^//# sourceMappingURL=.*$", "", original, flags=re.MULTILINE).rstrip()
        assert code in page, name


def test_the_app_script_uses_only_the_public_embed_api(page: str) -> None:
    app_script = re.findall(r"<script>\n(.*?)</script>", page, flags=re.DOTALL)[-1]
    assert set(re.findall(r"\bapi\.(\w+)", app_script)) == {"registerHandler", "sendUserMessage"}
    assert set(re.findall(r"window\.(\w+)", app_script)) == {"Poe", "marked", "DOMPurify"}
    assert "errorType" in app_script
    assert re.findall(r"\bPoe\.(\w+)", app_script) == []  # reached only through api = window.Poe


def test_the_page_holds_the_form_and_the_template_as_data(page: str) -> None:
    for field in ("topic", "order", "question", "urgent"):
        assert f'id="field-{field}"' in page
    assert '<option value="My order">My order</option>' in page
    assert '<button type="submit" id="submit">Ask Acme</button>' in page
    found = re.search(r'<script type="application/json" id="canvas-config">(.*?)</script>', page)
    assert found is not None
    config = json.loads(found.group(1))
    assert config["bot"] == "acme-help" and config["stream"] is True
    values = {"topic": "Refund", "question": "Where?", "order": "", "urgent": True}
    assert render_program(config["message"], values) == "@acme-help Refund: Where? This is urgent."
    order = next(field for field in config["inputs"] if field["name"] == "order")
    assert order["pattern"] == {"source": "^[A-Z]{2}\\d{6}$", "flags": "u"}


def test_text_from_the_yaml_cannot_break_out_of_the_page() -> None:
    hostile = "</script><script>alert(1)</script>"
    app = loaded(
        f"title: '{hostile}'\ninputs:\n  - {{name: q, kind: text, label: '{hostile}'}}\n"
        f'message: "@hello {hostile} {{{{ q }}}}"\n'
    )
    html = build_html(app)
    assert "<script>alert(1)" not in html
    config = re.search(r'id="canvas-config">(.*?)</script>', html)
    assert config is not None and json.loads(config.group(1))["message"][0].startswith("@hello </")
    assert page_config(app)["message"][0] == f"@hello {hostile} "


# --- the schema --------------------------------------------------------------------------------


def test_the_canvas_schema_is_current_and_bot_files_keep_theirs() -> None:
    committed = json.loads(schema.CANVAS_SCHEMA_PATH.read_text(encoding="utf-8"))
    assert committed == schema.build_canvas_schema(), schema.stale()
    assert schema.is_current(schema.CANVAS_SCHEMA_PATH, schema.build_canvas_schema)
    bots = json.loads(schema.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert "CanvasApp" not in json.dumps(bots) and bots["title"] == "Poe bot"


def test_the_example_validates_against_the_schema_it_names() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=../canvas.schema.json\n")
    validator = Draft202012Validator(json.loads(schema.CANVAS_SCHEMA_PATH.read_text()))
    assert list(validator.iter_errors(parse(text).data)) == []
    assert list(validator.iter_errors({"title": "T", "message": "@a", "inputs": [{}]})) != []


def _properties(node: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        found += list((node.get("properties") or {}).items())
        for child in node.values():
            found += _properties(child)
    elif isinstance(node, list):
        for child in node:
            found += _properties(child)
    return found


def test_every_canvas_property_is_documented() -> None:
    built = schema.build_canvas_schema()
    assert [name for name, child in _properties(built) if "description" not in child] == []
    assert [name for name, node in built["$defs"].items() if "description" not in node] == []


def test_problems_are_spec_errors_with_places() -> None:
    _, found = load_canvas_text("title: T\nmessage: 3\n", "c.yaml")
    assert [(type(p), p.line, p.column) for p in found] == [(SpecError, 2, 10)]
