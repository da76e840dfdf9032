"""schema.json: current, documented, and in agreement with the models on real documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from engine import schema
from engine.loader.yaml_marks import parse
from engine.spec import Bot

from .conftest import BOTS_DIR

BOT_FILES = sorted(BOTS_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(schema.SCHEMA_PATH.read_text(encoding="utf-8"))
    return result


@pytest.fixture(scope="module")
def validator(committed: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(committed)


def test_schema_json_is_current(committed: dict[str, Any]) -> None:
    assert committed == schema.build_schema(), schema.STALE
    assert schema.is_current(), schema.STALE


def test_the_stale_message_names_the_command() -> None:
    assert schema.STALE == "schema.json is out of date; run `python -m engine schema`"


def test_write_then_is_current_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    assert not schema.is_current(path)
    schema.write(path)
    assert schema.is_current(path)
    assert path.read_text(encoding="utf-8") == schema.render()
    path.write_text(schema.render() + "\n", encoding="utf-8")
    assert not schema.is_current(path)


def test_the_schema_is_a_valid_draft_2020_12_schema(committed: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(committed)
    assert committed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert committed["title"] == "Poe bot"


def _properties(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, property schema) under any `properties`, $defs included."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, child in properties.items():
                yield f"{path}/properties/{name}", child
        for key, child in node.items():
            yield from _properties(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _properties(child, f"{path}/{index}")


def test_every_property_has_a_description(committed: dict[str, Any]) -> None:
    found = list(_properties(committed, "#"))
    assert any(path.startswith("#/$defs/") for path, _ in found)
    missing = [path for path, child in found if "description" not in child]
    assert missing == []


def test_every_definition_has_a_description(committed: dict[str, Any]) -> None:
    missing = [name for name, node in committed["$defs"].items() if "description" not in node]
    assert missing == []


def test_the_walk_would_notice_a_missing_description() -> None:
    sample = {"$defs": {"X": {"properties": {"a": {"type": "string"}}}}}
    assert [path for path, child in _properties(sample, "#") if "description" not in child] == [
        "#/$defs/X/properties/a"
    ]


def _load_yaml(path: Path) -> Any:
    """As the engine reads it (libyaml: `[How long is shipping?, ...]` is a plain list item)."""
    return parse(path.read_text(encoding="utf-8")).data


@pytest.mark.parametrize("path", BOT_FILES, ids=lambda p: p.name)
def test_example_bots_validate_against_the_schema_and_the_models(
    path: Path, validator: Draft202012Validator
) -> None:
    data = _load_yaml(path)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []
    Bot.model_validate(data)


INVALID: dict[str, dict[str, Any]] = {
    "unknown-key": {"routes": [{"reply": "hi"}], "nmae": "x"},
    "missing-routes": {"name": "x"},
    "empty-routes": {"routes": []},
    "route-without-action": {"routes": [{"if": "x"}]},
    "route-with-two-actions": {"routes": [{"reply": "a", "error": {"text": "b"}}]},
    "quoted-integer": {"routes": [{"reply": "hi"}], "input": {"max_length": "20"}},
    "rule-without-message": {"routes": [{"reply": "hi"}], "input": {"max_length": {"value": 2}}},
    "reject-rule-typo": {
        "routes": [{"reply": "hi"}],
        "input": {"reject": [{"pattern": "a", "mesage": "m"}]},
    },
    "literal-access-key": {"routes": [{"reply": "hi"}], "access_key": "sk-123"},
    "bad-name": {"routes": [{"reply": "hi"}], "name": "has space"},
    "empty-condition": {"routes": [{"if": "", "reply": "hi"}]},
    "unknown-control": {
        "routes": [{"reply": "hi"}],
        "settings": {"parameter_controls": {"sections": [{"controls": [{"control": "knob"}]}]}},
    },
    "numeric-api-version": {
        "routes": [{"reply": "hi"}],
        "settings": {"parameter_controls": {"api_version": 2, "sections": [{"controls": []}]}},
    },
    "unknown-error-type": {"routes": [{"error": {"text": "x", "error_type": "oops"}}]},
}


@pytest.mark.parametrize("data", INVALID.values(), ids=INVALID.keys())
def test_invalid_documents_are_rejected_by_both(
    data: dict[str, Any], validator: Draft202012Validator
) -> None:
    assert list(validator.iter_errors(data)) != []
    with pytest.raises(ValidationError):
        Bot.model_validate(data)


def test_schema_formats_mark_the_compiled_strings(committed: dict[str, Any]) -> None:
    reply_route = committed["$defs"]["ReplyRoute"]["properties"]
    assert reply_route["reply"]["format"] == "jinja-template"
    assert reply_route["if"]["anyOf"][0]["format"] == "jmespath"
    reject = committed["$defs"]["InputRules"]["properties"]["reject"]
    plain, rule = reject["items"]["oneOf"]
    assert plain["format"] == "regex"
    assert rule == {"$ref": "#/$defs/RejectRule"}
    reject_rule = committed["$defs"]["RejectRule"]["properties"]
    assert reject_rule["pattern"]["format"] == "regex"
    assert reject_rule["message"]["format"] == "jinja-template"
