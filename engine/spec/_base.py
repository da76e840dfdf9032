"""The strict base every spec model shares, and the field types the loader compiles."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..patterns import PatternError, compile_pattern

__all__ = ["ENV_REF", "EnvRef", "Expr", "PatternError", "Regex", "StrictModel", "Template"]

# A bot author writes these as plain strings; the loader compiles them once.
# The json_schema_extra "format" tells editors (and our compile step) what they hold.
Template = Annotated[
    str,
    Field(json_schema_extra={"format": "jinja-template"}),
]
Expr = Annotated[
    str,
    Field(min_length=1, json_schema_extra={"format": "jmespath"}),
]

ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _check_regex(pattern: str) -> str:
    compile_pattern(pattern)  # PatternError: the loader shows a caret at its offset
    return pattern


Regex = Annotated[
    str,
    AfterValidator(_check_regex),
    Field(json_schema_extra={"format": "regex"}),
]
EnvRef = Annotated[
    str,
    Field(
        pattern=ENV_REF.pattern,
        json_schema_extra={"examples": ["${MY_BOT_ACCESS_KEY}"]},
    ),
]


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys are errors and loaded specs never change."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,  # YAML's "20" is a string: say so instead of guessing
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )
