"""The `settings` block: every Poe settings key, with parameter controls in Poe's exact schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import StrictModel


class _Control(StrictModel):
    label: str = Field(description="Label shown above the control.")
    description: str | None = Field(None, description="Help text shown under the label.")
    parameter_name: str = Field(
        min_length=1,
        description="Key of this control's value in `params` (Poe's `parameters`).",
    )


class Divider(StrictModel):
    """A horizontal line between controls."""

    control: Literal["divider"] = Field(description="Control type.")


class TextField(_Control):
    """A one-line text input."""

    control: Literal["text_field"] = Field(description="Control type.")
    default_value: str | None = Field(None, description="Value before the user changes it.")
    placeholder: str | None = Field(None, description="Grey hint text shown when empty.")


class TextArea(_Control):
    """A multi-line text input."""

    control: Literal["text_area"] = Field(description="Control type.")
    default_value: str | None = Field(None, description="Value before the user changes it.")
    placeholder: str | None = Field(None, description="Grey hint text shown when empty.")


class Option(StrictModel):
    """One choice of a drop-down."""

    value: str = Field(description="Value your bot receives in `params`.")
    name: str = Field(description="Text the user sees.")


class DropDown(_Control):
    """A list of named choices."""

    control: Literal["drop_down"] = Field(description="Control type.")
    default_value: str | None = Field(None, description="One of the options' `value`s.")
    options: list[Option] = Field(min_length=1, description="The choices, in display order.")

    @model_validator(mode="after")
    def _default_is_an_option(self) -> DropDown:
        values = [option.value for option in self.options]
        if self.default_value is not None and self.default_value not in values:
            raise ValueError(
                f"default_value {self.default_value!r} is not one of the options' values: "
                + ", ".join(repr(v) for v in values)
            )
        return self


class ToggleSwitch(_Control):
    """An on/off switch."""

    control: Literal["toggle_switch"] = Field(description="Control type.")
    default_value: bool | None = Field(None, description="Whether it starts on.")


class Slider(_Control):
    """A number picked between two bounds."""

    control: Literal["slider"] = Field(description="Control type.")
    default_value: float | None = Field(None, description="Starting value, within the bounds.")
    min_value: float = Field(description="Lowest value.")
    max_value: float = Field(description="Highest value.")
    step: float = Field(gt=0, description="Distance between two selectable values.")

    @model_validator(mode="after")
    def _bounds_hold(self) -> Slider:
        if self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} is above max_value {self.max_value}")
        value = self.default_value
        if value is not None and not self.min_value <= value <= self.max_value:
            raise ValueError(
                f"default_value {value} is outside min_value..max_value "
                f"({self.min_value}..{self.max_value})"
            )
        return self


class AspectRatioOption(StrictModel):
    """One aspect ratio choice."""

    value: str | None = Field(None, description="Value your bot receives, such as `16:9`.")
    width: float = Field(gt=0, description="Relative width.")
    height: float = Field(gt=0, description="Relative height.")


class AspectRatio(_Control):
    """A picker of image shapes."""

    control: Literal["aspect_ratio"] = Field(description="Control type.")
    default_value: str | None = Field(None, description="The starting option's value.")
    options: list[AspectRatioOption] = Field(min_length=1, description="The shapes offered.")


class LiteralOperand(StrictModel):
    """A fixed value in a condition."""

    literal: str | float | bool = Field(description="The value compared.")


class ParameterOperand(StrictModel):
    """Another control's current value in a condition."""

    parameter_name: str = Field(description="The control whose value is compared.")


Operand = LiteralOperand | ParameterOperand


class ConditionExpression(StrictModel):
    """`left <comparator> right`, evaluated by Poe's client."""

    comparator: Literal["eq", "ne", "gt", "ge", "lt", "le"] = Field(
        description="How `left` is compared with `right`."
    )
    left: Operand = Field(description="Left side: a literal or a parameter.")
    right: Operand = Field(description="Right side: a literal or a parameter.")


BaseControl = Annotated[
    Divider | TextField | TextArea | DropDown | ToggleSwitch | Slider | AspectRatio,
    Field(discriminator="control"),
]


class Condition(StrictModel):
    """Controls shown only while a condition holds."""

    control: Literal["condition"] = Field(description="Control type.")
    condition: ConditionExpression = Field(description="When the nested controls are shown.")
    controls: list[BaseControl] = Field(description="Controls shown while the condition holds.")


Control = Annotated[
    Divider | TextField | TextArea | DropDown | ToggleSwitch | Slider | AspectRatio | Condition,
    Field(discriminator="control"),
]


class Tab(StrictModel):
    """A tab of controls inside a section."""

    name: str | None = Field(None, description="Tab title.")
    controls: list[Control] = Field(description="Controls on this tab.")


class Section(StrictModel):
    """A titled group of controls (or tabs of controls)."""

    name: str | None = Field(None, description="Section title.")
    controls: list[Control] | None = Field(None, description="Controls in this section.")
    tabs: list[Tab] | None = Field(None, description="Tabs in this section.")
    collapsed_by_default: bool | None = Field(None, description="Start folded.")


class ParameterControls(StrictModel):
    """Poe's parameter controls (API version 2): options the user sets beside the chat box."""

    api_version: Literal["2"] = Field("2", description='Always the string "2".')
    sections: list[Section] = Field(min_length=1, description="Groups of controls.")


class PoeSettings(StrictModel):
    """Every Poe settings key this bot sets; unset keys keep Poe's defaults."""

    allow_attachments: bool | None = Field(None, description="Users may upload files.")
    expand_text_attachments: bool | None = Field(
        None, description="Poe parses text, PDF and URL attachments into `parsed_content`."
    )
    enable_image_comprehension: bool | None = Field(
        None,
        description="Poe describes images into `parsed_content` (one image per message).",
    )
    enforce_author_role_alternation: bool | None = Field(
        None, description="Poe merges messages so user and bot turns strictly alternate."
    )
    enable_multi_entity_prompting: bool | None = Field(
        None, description="Poe rewrites multi-bot and multi-user chats into context prompts."
    )
    parameter_controls: ParameterControls | None = Field(
        None, description="Controls the user sets; their values arrive as `params`."
    )
    rate_card: str | None = Field(
        None, description="Markdown pricing text; `[usd_milli_cents=X]` renders as points."
    )
    cost_label: str | None = Field(None, description="Short price label, same tag syntax.")
    context_clear_window_secs: int | None = Field(
        None, ge=0, description="Deprecated by Poe: clear context after N idle seconds."
    )
    allow_user_context_clear: bool | None = Field(
        None, description="Deprecated by Poe: users may clear the context."
    )
