"""Property-based fuzzing of bot files: any text ends in located messages, in bounded time.

Texts come from the example bots in bots/, mutated the ways careless or hostile files are
(explicit tags, anchors and aliases, deep nesting, cut text, shifted indentation, repeated
and dropped lines, stray characters), and from YAML-ish text strung together from YAML's
own punctuation. Each goes through `load_text`, which must return within the deadline with
every problem a SpecError placed at a line and column of the text. Examples are
derandomized, so CI sees the same ones each run. The trap files of issue 7.6 also go
through the real `python -m engine validate`, and what PyYAML writes, anchors and aliases
included, must read back as PyYAML reads it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import SpecError
from engine.loader import load_text
from engine.loader.yaml_marks import parse

from .conftest import BOTS_DIR, EXAMPLE_ENV, REPO

EXAMPLES = [path.read_text(encoding="utf-8") for path in sorted(BOTS_DIR.glob("*.yaml"))]
# A bot loads in a few milliseconds and the worst hostile file in about 0.3 s: two seconds
# fails only a loop that the limits in engine/loader/yaml_marks.py no longer stop.
FUZZ = settings(
    max_examples=1500,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TAGS = ["!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!str", "!!binary", "!!set"]
TAGS += ["!!map", "!!seq", "!!omap", "!!python/name:os.system", "!custom", "!", "!<tag:x>"]
# Values that once raised, crashed or hung the loader, or sit at one of its limits.
HOSTILE_VALUES = [
    "abc",
    "=",
    "<<",
    "2024-13-45",
    "9" * 5000,
    "1" + ":1" * 3000,
    "&r [*r]",
    "&m {<<: *m}",
    "*nowhere",
    "[" * 120,
    "{a: " * 120,
    "- " * 120,
    "[" * 99 + "]" * 99,
    "\x00",
    "\t",
    "\ud800",
    "|\n  block",
    "'unclosed",
    "{{ message",
]
# Nesting inside a string, out of the YAML loader's sight: Jinja's and JMESPath's parsers.
NESTED_TEMPLATES = [
    '"{{ ' + "(" * 80 + "message" + ")" * 80 + ' }}"',
    '"{% if ' + "(" * 80 + "turn" + ")" * 80 + ' %}x{% endif %}"',
]
NESTED_CONDITIONS = ['"' + "(" * 600 + "message" + ")" * 600 + '"', '"' + "!" * 600 + 'message"']
SOURCE_KEY = re.compile(r"^\s*-?\s*(if|reply|system|prompt): ")
TOKENS = ["-", " ", "  ", "\n", ": ", ":", "?", ",", "[", "]", "{", "}", "&a", "*a", "<<"]
TOKENS += ["'", '"', "|", ">", "#", "%YAML 1.1", "---", "...", "@", "`", "\\", "\t", "\r"]
TOKENS += ["a", "1", "0x1F", "1e9", "~", "yes", "name", "routes", "reply", "if", "{{", "}}"]
TOKENS += ["é", "\u2028", "\ufeff", *TAGS]

stray_text = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(TOKENS)
hostile_value = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.builds(
        lambda tag, value: f"{tag} {value}", st.sampled_from(TAGS), st.sampled_from(HOSTILE_VALUES)
    ),
    stray_text,
)

MUTATIONS = ["value", "anchor", "insert", "indent", "duplicate", "drop", "cut", "stray"]
MUTATIONS += ["source"]


@st.composite
def mutated_bot(draw: st.DrawFn) -> str:
    """An example bot with a few lines changed, added, moved or cut."""
    lines = draw(st.sampled_from(EXAMPLES)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        lines = lines or [""]
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        match draw(st.sampled_from(MUTATIONS)):
            case "value" if ": " in line:  # keeps the structure, so later checks run too
                lines[at] = line.split(": ", 1)[0] + ": " + draw(hostile_value)
            case "anchor" if ": " in line:
                key, value = line.split(": ", 1)
                lines[at] = f"{key}: &a {value}"
                after = draw(st.integers(at + 1, len(lines)))  # usually after the anchor
                lines.insert(after, f"{key.strip() or 'x'}: *a")
            case "insert":
                lines.insert(at, " " * draw(st.integers(0, 6)) + draw(hostile_value))
            case "source":  # a template or condition: its own parser reads the string
                sources = [i for i, text in enumerate(lines) if SOURCE_KEY.search(text)]
                if sources:
                    at = draw(st.sampled_from(sources))
                    key = lines[at].split(": ", 1)[0]
                    nested = NESTED_CONDITIONS if key.endswith("if") else NESTED_TEMPLATES
                    lines[at] = f"{key}: {draw(st.sampled_from(nested))}"
            case "indent":
                lines[at] = " " * draw(st.integers(0, 3)) + line.lstrip(" ")
            case "duplicate":
                lines.insert(at, line)
            case "drop":
                del lines[at]
            case "cut":
                lines[at] = line[: draw(st.integers(0, len(line)))]
                del lines[at + 1 :]
            case "stray":
                cut = draw(st.integers(0, len(line)))
                lines[at] = line[:cut] + draw(stray_text) + line[cut:]
    return "\n".join(lines) + "\n"


yamlish = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.sampled_from(HOSTILE_VALUES)), max_size=60
).map("".join)


def assert_located(text: str) -> None:
    """Loading returns, every problem is a SpecError at a line and column of the text."""
    bot, found = load_text(text, "bot.yaml", EXAMPLE_ENV)
    end = len(text.splitlines()) + 1  # "unexpected end" is placed on the line after the last
    for problem in found:
        assert isinstance(problem, SpecError)
        assert problem.file == "bot.yaml"
        assert 1 <= problem.line <= end, str(problem)
        assert problem.column >= 1, str(problem)
        assert str(problem).startswith(f"bot.yaml:{problem.line}:{problem.column}: ")
    assert (bot is None) == any(not problem.is_warning for problem in found)


@pytest.mark.timeout(60)
@FUZZ
@given(mutated_bot())
def test_mutated_example_bots_end_in_located_messages(text: str) -> None:
    assert_located(text)


@pytest.mark.timeout(60)
@FUZZ
@given(yamlish)
def test_yamlish_text_ends_in_located_messages(text: str) -> None:
    assert_located(text)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=500)
@given(values, st.booleans(), st.booleans())
def test_parse_reads_what_pyyaml_reads_anchors_included(
    value: object, flow: bool, unicode: bool
) -> None:
    # The same object thrice: a collection is written once with an anchor, then as aliases.
    data = {"a": value, "b": [value, {"c": value}]}
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=unicode)
    assert parse(text).data == yaml.load(text, Loader=yaml.CSafeLoader)


TRAPS = {  # issue 7.6: each printed a traceback, crashed or ran past 60 s in 2 GB
    "int": "name: !!int abc\n",
    "float": "name: !!float abc\n",
    "timestamp": "name: !!timestamp x\n",
    "custom": "name: !custom v\n",
    "python": "name: !!python/name:os.system ''\n",
    "merge": "routes:\n  - <<: 5\n",
    "digits": "name: " + "9" * 4301 + "\n",
    "deep": "routes: " + "[" * 500 + "]" * 500 + "\n",
    "recursive": "routes: &r [*r]\n",
    "laughs": "l0: &l0 [a, a, a, a, a, a, a, a, a]\n"
    + "".join(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9)),
}


def test_validate_reports_every_trap_file_located_and_exits_1(tmp_path: Path) -> None:
    for name, text in TRAPS.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "validate", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"{len(TRAPS)} files: {len(TRAPS)} errors, 0 warnings"
    assert sorted(line.split(":", 1)[0] for line in lines[:-1]) == sorted(
        f"{tmp_path}/{name}.yaml" for name in TRAPS
    )
    for line in lines[:-1]:
        file, row, column, _ = line.split(":", 3)
        assert int(row) >= 1 and int(column) >= 1, line


@pytest.mark.parametrize("example", range(len(EXAMPLES)))
def test_every_source_nested_too_deeply_ends_in_located_messages(example: int) -> None:
    """Each template and condition of each example, in turn, nested past its parser's depth
    (the mutations above rarely leave the rest of a file intact enough to reach them)."""
    lines = EXAMPLES[example].splitlines()
    sources = [at for at, line in enumerate(lines) if SOURCE_KEY.search(line)]
    assert sources
    for at in sources:
        key = lines[at].split(": ", 1)[0]
        for nested in NESTED_CONDITIONS if key.endswith("if") else NESTED_TEMPLATES:
            changed = [*lines[:at], f"{key}: {nested}", *lines[at + 1 :]]
            assert_located("\n".join(changed) + "\n")
