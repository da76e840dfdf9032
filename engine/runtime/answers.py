"""Whether a user's answer fits what an `ask` step expects, and the value it saves."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from ..compiled import AnswerCheck

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
DAY_FIRST = re.compile(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})")
INTEGER = re.compile(r"[+-]?\d+")

RETRY_TEXT = {
    "text": "Please answer with some text.",
    "number": "Please answer with a number, like 42 or 3.5.",
    "integer": "Please answer with a whole number, like 42.",
    "email": "Please answer with an email address, like name@example.com.",
    "url": "Please answer with a web address starting with http:// or https://.",
    "date": "Please answer with a date, like 2026-12-31.",
    "pattern": "Sorry, that answer doesn't have the expected form.",
}


def read_answer(check: AnswerCheck, text: str) -> tuple[bool, Any]:
    """(True, the value to save) when the answer fits; (False, None) when it does not."""
    answer = text.strip()
    if not answer:
        return False, None
    match check.type:
        case "choices":
            chosen = [c for c in check.choices if c.casefold() == answer.casefold()]
            return (True, chosen[0]) if chosen else (False, None)
        case "pattern":
            assert check.pattern is not None
            return (True, answer) if check.pattern.found_in(answer) else (False, None)
        case "number":
            return _number(answer)
        case "integer":
            # Python reads at most 4,300 digits; no answer to a question needs 50.
            fits = len(answer) <= 50 and INTEGER.fullmatch(answer)
            return (True, int(answer)) if fits else (False, None)
        case "email":
            return (True, answer) if EMAIL.fullmatch(answer) else (False, None)
        case "url":
            return (True, answer) if _is_url(answer) else (False, None)
        case "date":
            found = _date(answer)
            return (True, found.isoformat()) if found else (False, None)
    return True, answer


def retry_text(check: AnswerCheck) -> str:
    """What is said when an answer does not fit and the step has no `retry:`."""
    if check.type == "choices":
        return "Please choose one of: " + ", ".join(check.choices) + "."
    return RETRY_TEXT.get(check.type, RETRY_TEXT["pattern"])


def _number(answer: str) -> tuple[bool, Any]:
    if len(answer) > 50:
        return False, None
    try:
        value = float(answer.replace(",", ""))
    except ValueError:
        return False, None
    if not math.isfinite(value):
        return False, None
    return True, int(value) if value.is_integer() and "." not in answer else value


def _is_url(answer: str) -> bool:
    try:
        url = urlsplit(answer)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname) and " " not in answer


def _date(answer: str) -> date | None:
    day_first = DAY_FIRST.fullmatch(answer)
    try:
        if day_first:
            day, month, year = (int(part) for part in day_first.groups())
            return date(year, month, day)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", answer):
            return date.fromisoformat(answer)
    except ValueError:
        return None
    return None
