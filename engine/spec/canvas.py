"""A canvas app declared in YAML: a form, the message it sends a bot, and how the answer shows.

`python -m engine canvas build` turns one into a single HTML file that talks to bots only
through Poe's public Embed API (`window.Poe`). Everything here must therefore work in a
browser without a server: field rules are checked in the page, patterns are the subset
RE2 and JavaScript's RegExp read alike (`engine/js_patterns.py`), and the message is a
template restricted to what the page can render itself (`{{ name }}` and `{% if %}`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from ..js_patterns import browser_pattern
from ._base import StrictModel

INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

_TEMPLATE_DOC = (
    "A template over the inputs, by name: `{{ name }}` puts a field's value in, "
    "`{% if name %}...{% elif ... %}...{% else %}...{% endif %}` keeps text only when a field "
    "is filled in, a toggle is on, or a file is attached; a test may also be `not name` or "
    "`name == 'text'`. Nothing else of Jinja: the page renders it itself, in the browser."
)


def _check_browser_regex(pattern: str) -> str:
    browser_pattern(pattern)  # PatternError: the loader shows a caret at its offset
    return pattern


BrowserRegex = Annotated[
    str,
    AfterValidator(_check_browser_regex),
    Field(json_schema_extra={"format": "regex"}),
]
CanvasTemplate = Annotated[str, Field(json_schema_extra={"format": "canvas-template"})]


class _Input(StrictModel):
    """What every form field has."""

    name: str = Field(
        pattern=INPUT_NAME_PATTERN,
        description="How the message template reads this field (`{{ name }}`): letters, "
        "digits and '_', not starting with a digit.",
        examples=["question"],
    )
    label: str | None = Field(
        None, description="Shown above the field; default: the name, '_' as spaces."
    )
    help: str | None = Field(None, description="A line of help shown under the field.")
    required: bool = Field(False, description="The form is not sent while this is empty.")
    invalid: str | None = Field(
        None,
        description="Shown under the field when its value breaks any of its rules; "
        "default: the specific reason.",
    )

    @property
    def shown_label(self) -> str:
        return self.label if self.label is not None else self.name.replace("_", " ").capitalize()


class _Lengths(_Input):
    """The rules text fields share."""

    placeholder: str | None = Field(None, description="Grey text shown while it is empty.")
    default: str | None = Field(None, description="The value the form starts with.")
    min_length: int | None = Field(
        None, ge=0, description="Fewest characters, after trimming (when filled in)."
    )
    max_length: int | None = Field(None, ge=1, description="Most characters.")
    pattern: BrowserRegex | None = Field(
        None,
        description="A regular expression the whole value must match (when filled in), as "
        "HTML's `pattern`: RE2 syntax restricted to what browsers read alike (see README); "
        "a leading `(?i)` ignores case.",
        examples=[r"^[A-Z]-\d{5}$"],
    )

    @model_validator(mode="after")
    def _lengths_ordered(self) -> Any:
        low, high = self.min_length, self.max_length
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_length {low} is above max_length {high}")
        return self


class TextInput(_Lengths):
    """A one-line text field."""

    kind: Literal["text"] = Field(description="Field type.")


class LongTextInput(_Lengths):
    """A text area, for several lines."""

    kind: Literal["long_text"] = Field(description="Field type.")
    rows: int = Field(5, ge=1, le=40, description="Visible lines.")


class NumberInput(_Input):
    """A number field; the message gets the number as the user typed it."""

    kind: Literal["number"] = Field(description="Field type.")
    placeholder: str | None = Field(None, description="Grey text shown while it is empty.")
    default: float | None = Field(None, description="The value the form starts with.")
    min: float | None = Field(None, description="Smallest value allowed.")
    max: float | None = Field(None, description="Largest value allowed.")
    integer: bool = Field(False, description="Only whole numbers.")

    @model_validator(mode="after")
    def _range_ordered(self) -> Any:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class ChoiceInput(_Input):
    """One option among several, from a drop-down list; the message gets the option's text."""

    kind: Literal["choice"] = Field(description="Field type.")
    options: list[str] = Field(
        min_length=1, description="The options, in order.", examples=[["Shipping", "Refund"]]
    )
    default: str | None = Field(
        None, description="The option chosen at first; default: none (the user must pick)."
    )

    @model_validator(mode="after")
    def _default_offered(self) -> Any:
        if self.default is not None and self.default not in self.options:
            raise ValueError(f"default {self.default!r} is not one of the options")
        if len(set(self.options)) != len(self.options):
            raise ValueError("an option is listed twice")
        return self


class ToggleInput(_Input):
    """A switch, on or off; use it in `{% if name %}`. `required: true` means it must be on
    (an "I agree" box)."""

    kind: Literal["toggle"] = Field(description="Field type.")
    default: bool = Field(False, description="Whether it starts on.")


class FileInput(_Input):
    """Files sent with the message as attachments; use it in `{% if name %}`."""

    kind: Literal["file"] = Field(description="Field type.")
    types: list[str] = Field(
        default_factory=list,
        description="Allowed MIME types; `*` matches any part (`image/*`); default: any.",
        examples=[["image/*", "application/pdf"]],
    )
    max_files: int = Field(1, ge=1, le=20, description="Most files the user may choose.")
    max_size_mb: float | None = Field(
        None, gt=0, description="Largest size of each file, in megabytes (1,000,000 bytes)."
    )


Input = Annotated[
    TextInput | LongTextInput | NumberInput | ChoiceInput | ToggleInput | FileInput,
    Field(discriminator="kind"),
]


class Answer(StrictModel):
    """How the bot's answer shows in the page."""

    format: Literal["markdown", "text"] = Field(
        "markdown",
        description="`markdown`: rendered, then sanitized (no scripts, no event handlers); "
        "`text`: shown as it is. An answer Poe marks `text/plain` always shows as text.",
    )
    suggested_replies: list[CanvasTemplate] = Field(
        default_factory=list,
        description="Buttons shown under each finished answer; a click sends its text to "
        "the same bot as a follow-up (`@bot <text>`). The Embed API gives a page no "
        "suggested replies of the bot's own, so these are declared here. " + _TEMPLATE_DOC,
        examples=[["Tell me more", "Explain it more simply"]],
    )


class CanvasApp(StrictModel):
    """A canvas app: a form whose values become one message to a bot, and its answer."""

    title: str = Field(min_length=1, description="The page's title and heading.")
    description: str = Field("", description="Markdown shown under the title.")
    inputs: list[Input] = Field(default_factory=list, description="The form's fields, in order.")
    message: CanvasTemplate = Field(
        min_length=1,
        description="The message sent, starting with `@` and the bot's name. " + _TEMPLATE_DOC,
        examples=["@acme-help {{ question }}{% if order %} (order {{ order }}){% endif %}"],
    )
    stream: bool = Field(True, description="Show the answer as it is written.")
    open_chat: bool = Field(False, description="Also show Poe's chat with the bot.")
    submit: str = Field("Send", min_length=1, description="The submit button's label.")
    answer: Answer = Field(default_factory=Answer, description="How the answer shows.")
