"""The spec models' own rules, independent of YAML: strictness, unions and validators."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from engine.protocol.requests import QueryRequest
from engine.spec import (
    BOT_NAME_PATTERN,
    Bot,
    ErrorRoute,
    Expect,
    InputRules,
    ParameterControls,
    ReplyRoute,
    Route,
    TestCase,
    Turn,
)
from engine.spec._base import PatternError
from engine.spec.input import AttachmentRules, MinLengthRule, RejectRule, RequiredRule, TypesRule
from engine.spec.poe_settings import DropDown, Slider
from engine.spec.routes import ACTION_KEYS

ROUTE: TypeAdapter[ReplyRoute | ErrorRoute] = TypeAdapter(Route)
MINIMAL: dict[str, Any] = {"routes": [{"reply": "hi"}]}


def only_error(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, Any]:
    (error,) = exc.value.errors()
    return dict(error)


def bot(**fields: Any) -> Bot:
    return Bot.model_validate({**MINIMAL, **fields})


# --- strict base -------------------------------------------------------------------------


def test_a_minimal_bot_gets_the_defaults() -> None:
    spec = Bot.model_validate(MINIMAL)
    assert spec.name is None
    assert spec.description == ""
    assert spec.access_key is None
    assert spec.prompts == {}
    assert spec.suggested_replies == []
    assert spec.input is None
    assert spec.tests == []
    assert spec.settings.model_dump(exclude_none=True) == {}
    assert isinstance(spec.routes[0], ReplyRoute)


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({**MINIMAL, "nmae": "x"}, ("nmae",)),
        ({"routes": [{"reply": "hi", "sugest": []}]}, ("routes", 0, "reply", "sugest")),
        ({"routes": [{"reply": "hi", "when": "x"}]}, ("routes", 0, "reply", "when")),
        ({**MINIMAL, "input": {"max": 3}}, ("input", "max")),
        ({**MINIMAL, "settings": {"allow_attachment": True}}, ("settings", "allow_attachment")),
        ({**MINIMAL, "tests": [{"say": "x", "expect": {"contain": "y"}}]}, None),
    ],
)
def test_extra_keys_are_forbidden_everywhere(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        Bot.model_validate(data)
    error = only_error(caught)
    assert error["type"] == "extra_forbidden"
    if loc is not None:
        assert error["loc"] == loc


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"input": {"max_length": "20"}}, "int_type"),
        ({"input": {"max_length": 2.0}}, "int_type"),
        ({"input": {"max_length": True}}, "int_type"),
        ({"description": 3}, "string_type"),
        ({"greeting": ["a"]}, "string_type"),
        ({"settings": {"allow_attachments": "yes"}}, "bool_type"),
        ({"settings": {"allow_attachments": 1}}, "bool_type"),
        ({"prompts": {"a": 1}}, "string_type"),
        ({"suggested_replies": "a"}, "list_type"),
    ],
)
def test_types_are_strict(fields: dict[str, Any], kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        bot(**fields)
    assert only_error(caught)["type"] == kind


def test_numbers_may_be_written_as_integers_where_floats_are_expected() -> None:
    slider = Slider.model_validate(
        {
            "control": "slider",
            "label": "S",
            "parameter_name": "s",
            "min_value": 0,
            "max_value": 10,
            "step": 1,
        }
    )
    assert (slider.min_value, slider.max_value, slider.step) == (0, 10, 1)


def test_loaded_specs_are_frozen() -> None:
    spec = bot()
    with pytest.raises(ValidationError) as caught:
        spec.description = "changed"  # type: ignore[misc]
    assert only_error(caught)["type"] == "frozen_instance"


# --- routes: `if` alias and the action discriminator -------------------------------------


def test_if_is_the_written_name_of_when() -> None:
    route = ROUTE.validate_python({"if": "turn > `1`", "reply": "hi"})
    assert isinstance(route, ReplyRoute)
    assert route.when == "turn > `1`"
    assert route.model_dump(exclude_none=True) == {"if": "turn > `1`", "reply": "hi", "files": []}


@pytest.mark.parametrize(
    ("data", "model"),
    [
        ({"reply": "hi"}, ReplyRoute),
        ({"reply": "hi", "suggest": ["a"]}, ReplyRoute),
        ({"error": {"text": "no"}}, ErrorRoute),
        ({"if": "x", "error": {"text": "no", "allow_retry": True}}, ErrorRoute),
    ],
)
def test_the_action_key_picks_the_route_model(data: dict[str, Any], model: type) -> None:
    assert type(ROUTE.validate_python(data)) is model


def test_route_models_validate_as_themselves() -> None:
    route = ErrorRoute.model_validate({"error": {"text": "no"}})
    assert ROUTE.validate_python(route) is route
    assert (route.error.allow_retry, route.error.error_type) == (False, None)


@pytest.mark.parametrize(
    "data",
    [{}, {"if": "x"}, {"reply": "a", "error": {"text": "b"}}, {"replly": "a"}, "reply", ["x"]],
)
def test_a_route_needs_exactly_one_action(data: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ROUTE.validate_python(data)
    error = only_error(caught)
    assert error["type"] == "route_action"
    assert error["msg"] == "a route needs exactly one action: " + " or ".join(ACTION_KEYS)


@pytest.mark.parametrize("when", ["", None])
def test_an_empty_condition_is_refused_and_none_is_the_fallback(when: str | None) -> None:
    if when is None:
        assert ROUTE.validate_python({"if": None, "reply": "a"}).when is None
        return
    with pytest.raises(ValidationError) as caught:
        ROUTE.validate_python({"if": when, "reply": "a"})
    assert only_error(caught)["type"] == "string_too_short"


@pytest.mark.parametrize(
    ("error_type", "ok"),
    [
        ("user_message_too_long", True),
        ("user_caused_error", True),
        ("insufficient_fund", True),
        ("privacy_authorization_error", True),
        ("other", False),
    ],
)
def test_error_types_are_poes(error_type: str, ok: bool) -> None:
    data = {"error": {"text": "no", "error_type": error_type}}
    if ok:
        assert ROUTE.validate_python(data).error.error_type == error_type  # type: ignore[union-attr]
    else:
        with pytest.raises(ValidationError):
            ROUTE.validate_python(data)


# --- bot name and access key -------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "A", "0", "my-bot", "my_bot.v2", "Bot-1_2.3", "a" * 64, "x" + "-" * 63]
)
def test_valid_names(name: str) -> None:
    assert bot(name=name).name == name
    assert re.fullmatch(BOT_NAME_PATTERN.strip("^$"), name)


@pytest.mark.parametrize(
    "name", ["", "-bot", "_bot", ".bot", "my bot", "a/b", "a" * 65, "bött", "bot\n", "a:b"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        bot(name=name)
    assert only_error(caught)["type"] == "string_pattern_mismatch"


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("${MY_KEY}", True),
        ("${_k1}", True),
        ("${1KEY}", False),
        ("$MY_KEY", False),
        ("${MY-KEY}", False),
        ("${MY_KEY}x", False),
        ("sk-abcdef", False),
        ("", False),
    ],
)
def test_access_key_must_be_an_environment_reference(key: str, ok: bool) -> None:
    if ok:
        assert bot(access_key=key).access_key == key
    else:
        with pytest.raises(ValidationError):
            bot(access_key=key)


# --- input rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"min_length": 5, "max_length": 2}, "Value error, min_length 5 is above max_length 2"),
        ({"max_length": 0}, "Input should be greater than or equal to 1"),
        ({"min_length": -1}, "Input should be greater than or equal to 0"),
        ({"attachments": {"max": -1}}, "Input should be greater than or equal to 0"),
        (
            {"attachments": {"types": []}},
            "List should have at least 1 item after validation, not 0",
        ),
        ({"error_type": "nope"}, None),
    ],
)
def test_input_rules_validators(rules: dict[str, Any], message: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        InputRules.model_validate(rules)
    if message is not None:
        assert only_error(caught)["msg"] == message


def test_input_rules_accept_equal_lengths_and_defaults() -> None:
    rules = InputRules.model_validate({"min_length": 3, "max_length": 3})
    assert (rules.min_length, rules.max_length) == (3, 3)
    assert rules.reject == []
    assert rules.error_type == "user_caused_error"
    assert rules.invalid is None


@pytest.mark.parametrize(
    ("pattern", "offset", "message"),
    [
        ("ab(c", 2, "invalid regular expression: missing ), unterminated group"),
        ("[a-", 0, "invalid regular expression: missing ], unterminated character class"),
        ("a)", 1, "invalid regular expression: unbalanced parenthesis"),
        ("a(?=b)", 1, "invalid regular expression: lookahead (?=...) is not supported"),
        ("a{2,1}", 1, "invalid regular expression: invalid repetition {2,1}"),
    ],
)
@pytest.mark.parametrize("written", ["plain", "rule"])
def test_reject_patterns_must_compile(
    pattern: str, offset: int, message: str, written: str
) -> None:
    item: Any = pattern if written == "plain" else {"pattern": pattern, "message": "m"}
    with pytest.raises(ValidationError) as caught:
        InputRules.model_validate({"reject": ["fine", item]})
    error = only_error(caught)
    # The union tag is no YAML key: the loader drops it (test_loader shows the located text).
    assert error["loc"] == (
        ("reject", 1, "plain") if written == "plain" else ("reject", 1, "rule", "pattern")
    )
    cause = error["ctx"]["error"]
    assert isinstance(cause, PatternError)
    assert (str(cause), cause.pattern, cause.offset) == (message, pattern, offset)


def test_every_rule_may_be_written_with_its_own_message() -> None:
    rules = InputRules.model_validate(
        {
            "min_length": {"value": 2, "message": "More."},
            "max_length": 300,
            "reject": ["a", {"pattern": "b", "message": "No b."}],
            "attachments": {
                "required": {"value": True, "message": "Attach."},
                "max": 2,
                "types": {"value": ["image/*"], "message": "Images."},
            },
        }
    )
    assert rules.min_length == MinLengthRule(value=2, message="More.")
    assert rules.max_length == 300
    assert rules.reject == ["a", RejectRule(pattern="b", message="No b.")]
    assert rules.patterns() == ["a", "b"]
    assert rules.attachments == AttachmentRules(
        required=RequiredRule(value=True, message="Attach."),
        max=2,
        types=TypesRule(value=["image/*"], message="Images."),
    )


@pytest.mark.parametrize(
    ("rules", "loc", "message"),
    [
        ({"max_length": {"value": 300}}, ("max_length", "rule", "message"), "Field required"),
        (
            {"max_length": {"value": 0, "message": "m"}},
            ("max_length", "rule", "value"),
            "Input should be greater than or equal to 1",
        ),
        (
            {"max_length": {"value": "300", "message": "m"}},
            ("max_length", "rule", "value"),
            "Input should be a valid integer",
        ),
        ({"max_length": "300"}, ("max_length", "plain"), "Input should be a valid integer"),
        (
            {"reject": [{"pattern": "a", "text": "m"}]},
            ("reject", 0, "rule", "message"),
            "Field required",
        ),
        (
            {"attachments": {"types": {"value": [], "message": "m"}}},
            ("attachments", "types", "rule", "value"),
            "List should have at least 1 item after validation, not 0",
        ),
        (
            {
                "min_length": {"value": 5, "message": "m"},
                "max_length": {"value": 2, "message": "m"},
            },
            (),
            "Value error, min_length 5 is above max_length 2",
        ),
    ],
)
def test_a_rule_with_a_message_is_checked_like_a_plain_one(
    rules: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        InputRules.model_validate(rules)
    errors = [(e["loc"], e["msg"]) for e in caught.value.errors()]
    assert (loc, message) in errors


# --- parameter controls ------------------------------------------------------------------


def slider(**fields: Any) -> dict[str, Any]:
    return {
        "control": "slider",
        "label": "Strength",
        "parameter_name": "strength",
        "min_value": 0,
        "max_value": 1,
        "step": 0.1,
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_value": 2}, "Value error, min_value 2.0 is above max_value 1.0"),
        (
            {"default_value": 1.5},
            "Value error, default_value 1.5 is outside min_value..max_value (0.0..1.0)",
        ),
        (
            {"default_value": -0.1},
            "Value error, default_value -0.1 is outside min_value..max_value (0.0..1.0)",
        ),
        ({"step": 0}, "Input should be greater than 0"),
        ({"step": -1}, "Input should be greater than 0"),
    ],
)
def test_slider_rules(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Slider.model_validate(slider(**fields))
    assert only_error(caught)["msg"] == message


@pytest.mark.parametrize("default", [None, 0, 0.5, 1])
def test_slider_defaults_within_bounds(default: float | None) -> None:
    assert Slider.model_validate(slider(default_value=default)).default_value == default


def test_a_slider_may_have_a_single_value() -> None:
    assert Slider.model_validate(slider(min_value=1, max_value=1, default_value=1)).step == 0.1


def drop_down(**fields: Any) -> dict[str, Any]:
    return {
        "control": "drop_down",
        "label": "Style",
        "parameter_name": "style",
        "options": [{"value": "photo", "name": "Photo"}, {"value": "pixel", "name": "Pixel"}],
        **fields,
    }


def test_drop_down_default_must_be_one_of_the_values() -> None:
    assert DropDown.model_validate(drop_down(default_value="pixel")).default_value == "pixel"
    with pytest.raises(ValidationError) as caught:
        DropDown.model_validate(drop_down(default_value="Pixel"))
    assert only_error(caught)["msg"] == (
        "Value error, default_value 'Pixel' is not one of the options' values: 'photo', 'pixel'"
    )


def test_drop_down_needs_options() -> None:
    with pytest.raises(ValidationError) as caught:
        DropDown.model_validate(drop_down(options=[]))
    assert only_error(caught)["type"] == "too_short"


def controls(*items: dict[str, Any], api_version: Any = "2") -> dict[str, Any]:
    return {"api_version": api_version, "sections": [{"controls": list(items)}]}


def test_controls_are_discriminated_by_their_control_key() -> None:
    parsed = ParameterControls.model_validate(
        controls(
            slider(),
            drop_down(),
            {"control": "divider"},
            {"control": "toggle_switch", "label": "T", "parameter_name": "t"},
            {
                "control": "condition",
                "condition": {
                    "comparator": "eq",
                    "left": {"parameter_name": "style"},
                    "right": {"literal": "pixel"},
                },
                "controls": [{"control": "text_field", "label": "P", "parameter_name": "p"}],
            },
        )
    )
    kinds = [type(c).__name__ for c in parsed.sections[0].controls or []]
    assert kinds == ["Slider", "DropDown", "Divider", "ToggleSwitch", "Condition"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (controls({"control": "slidr"}), "union_tag_invalid"),
        (controls({"label": "no control key"}), "union_tag_not_found"),
        (controls(slider(), api_version=2), "literal_error"),
        (controls(slider(), api_version="3"), "literal_error"),
        ({"sections": []}, "too_short"),
        (
            controls(
                {
                    "control": "condition",
                    "condition": {
                        "comparator": "eq",
                        "left": {"literal": 1},
                        "right": {"literal": 1},
                    },
                    "controls": [
                        {
                            "control": "condition",
                            "condition": {
                                "comparator": "eq",
                                "left": {"literal": 1},
                                "right": {"literal": 1},
                            },
                            "controls": [],
                        }
                    ],
                }
            ),
            "union_tag_invalid",  # conditions do not nest
        ),
    ],
)
def test_control_rules(data: dict[str, Any], kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ParameterControls.model_validate(data)
    assert only_error(caught)["type"] == kind


# --- tests: one form or the other --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "a test needs `say` (one turn) or `turns` (several)"),
        ({"name": "x"}, "a test needs `say` (one turn) or `turns` (several)"),
        (
            {"say": "a", "turns": [{"say": "b"}]},
            "a test needs either `say` (one turn) or `turns` (several), not both",
        ),
        (
            {"turns": [{"say": "b"}], "expect": {"contains": "x"}},
            "with `turns`, put `expect`, `params`, `attachments`, `model_reply` and `http_reply` "
            "in each turn",
        ),
        (
            {"turns": [{"say": "b"}], "params": {"a": 1}},
            "with `turns`, put `expect`, `params`, `attachments`, `model_reply` and `http_reply` "
            "in each turn",
        ),
        (
            {"turns": [{"say": "b"}], "attachments": [{"content_type": "image/png"}]},
            "with `turns`, put `expect`, `params`, `attachments`, `model_reply` and `http_reply` "
            "in each turn",
        ),
    ],
)
def test_a_test_case_has_one_form(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TestCase.model_validate(data)
    assert only_error(caught)["msg"] == f"Value error, {message}"


def test_turns_may_not_be_empty() -> None:
    with pytest.raises(ValidationError) as caught:
        TestCase.model_validate({"turns": []})
    assert only_error(caught)["type"] == "too_short"


def test_the_single_turn_form_becomes_one_turn() -> None:
    case = TestCase.model_validate(
        {
            "say": "hi",
            "params": {"style": "pixel"},
            "attachments": [{"content_type": "image/png"}],
            "expect": {"contains": "x"},
        }
    )
    (turn,) = case.all_turns()
    assert turn == Turn.model_validate(
        {
            "say": "hi",
            "params": {"style": "pixel"},
            "attachments": [{"content_type": "image/png"}],
            "expect": {"contains": "x"},
            "language": "en",
        }
    )
    attachment = turn.attachments[0]
    assert (attachment.name, attachment.url) == ("file", "https://example.invalid/file")


def test_a_single_turn_without_expect_checks_nothing() -> None:
    (turn,) = TestCase.model_validate({"say": "hi"}).all_turns()
    assert turn.expect == Expect()
    assert turn.params == {}


def test_the_turns_form_keeps_its_turns() -> None:
    case = TestCase.model_validate(
        {"turns": [{"say": "a"}, {"say": "b", "expect": {"error": True}}]}
    )
    assert [t.say for t in case.all_turns()] == ["a", "b"]
    assert case.all_turns()[1].expect.error is True


def test_turns_take_the_tests_language_and_time_unless_they_set_their_own() -> None:
    morning, evening = datetime(2026, 3, 4, 9, tzinfo=UTC), datetime(2026, 3, 4, 18, tzinfo=UTC)
    case = TestCase.model_validate(
        {
            "language": "pt-BR",
            "now": morning,
            "user_id": "u-42",
            "turns": [{"say": "a"}, {"say": "b", "language": "de", "now": evening}],
        }
    )
    assert [(t.language, t.now) for t in case.all_turns()] == [
        ("pt-BR", morning),
        ("de", evening),
    ]
    assert (case.user_id, case.conversation_id) == ("u-42", "c-test")
    (single,) = TestCase.model_validate({"say": "a"}).all_turns()
    assert (single.language, single.now) == ("en", None)


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        (datetime(2026, 3, 4, 9, 30), datetime(2026, 3, 4, 9, 30, tzinfo=UTC)),
        (
            datetime(2026, 3, 4, 9, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 4, 7, 30, tzinfo=UTC),
        ),
        ("2026-03-04T09:30:00-01:00", datetime(2026, 3, 4, 10, 30, tzinfo=UTC)),
        (date(2026, 3, 4), datetime(2026, 3, 4, tzinfo=UTC)),
    ],
)
def test_a_tests_time_is_utc(written: Any, utc: datetime) -> None:
    now = TestCase.model_validate({"say": "a", "now": written}).now
    assert now == utc
    assert now is not None and now.tzinfo is UTC


@pytest.mark.parametrize(
    "tag",
    [
        "en",
        "pt-BR",
        "zh-Hant-TW",
        "sr-Latn-RS-x-a-b-c",
        "EN",
        "e",
        "english",
        "en_US",
        "en-",
        "pt-BR ",
        "en-toolongtag",
        "a-b-c-d-e-f-g-h",
        "",
        "ＥＮ",
    ],
)
def test_a_tests_language_is_what_the_request_edge_accepts(tag: str) -> None:
    """A tag Poe's request could not carry (the edge reads it as `en`) is refused."""
    if QueryRequest(query=[], language_code=tag).language_code == tag:
        assert TestCase.model_validate({"say": "a", "language": tag}).language == tag
        return
    with pytest.raises(ValidationError) as caught:
        TestCase.model_validate({"say": "a", "language": tag})
    assert only_error(caught)["msg"] == (
        f"Value error, got {tag!r}; expected a BCP 47 language tag such as en or pt-BR"
    )


@pytest.mark.parametrize(
    ("expect", "ok"),
    [
        ({"contains": "a"}, True),
        ({"contains": ["a", "b"]}, True),
        ({"not_contains": ["a"]}, True),
        ({"regex": "^a+$"}, True),
        ({"regex": "a("}, False),
        ({"suggested": "a"}, False),
        ({"error": "yes"}, False),
        ({"contains": 1}, False),
    ],
)
def test_expect_fields(expect: dict[str, Any], ok: bool) -> None:
    if ok:
        assert Expect.model_validate(expect).model_dump(exclude_none=True) == expect
    else:
        with pytest.raises(ValidationError):
            Expect.model_validate(expect)
