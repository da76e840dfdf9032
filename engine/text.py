"""Text is text: lone UTF-16 surrogates made valid before they reach an encoder.

JSON can carry `\\ud800` (and `json.loads` of bytes reads the raw bytes ED A0 80 the same
way), and a model can split an emoji's escaped halves across two chunks. Python keeps such
a half as a lone surrogate code point, which no UTF-8 encoder accepts: one in a request
would break the SSE encoder and the body sent to a model. Every text crossing the edge is
cleaned here, once.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """`text` with surrogate pairs joined and lone surrogates replaced by U+FFFD.

    Returns the same object when there is nothing to fix, which is almost always.
    """
    if _SURROGATE.search(text) is None:
        return text
    # UTF-16 with `surrogatepass` writes each half as its own code unit; decoding joins
    # the valid pairs and `replace` turns each lone half into U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_data(value: Any) -> Any:
    """A parsed JSON value with every string (keys too) cleaned by `clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_data(item) for item in value]
    if isinstance(value, dict):
        return {clean_text(key): clean_data(item) for key, item in value.items()}
    return value
