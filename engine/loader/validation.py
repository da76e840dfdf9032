"""A document checked against the spec: each pydantic error located, told once per value,
and explained where the cause is one of YAML's own traps."""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import SourceSnippet, SpecError
from ..spec import Bot
from ..spec._base import PatternError
from .locate import loc_text, offset_position, position, real_loc
from .messages import Reading, allowed_keys, message_for, tag_positions
from .traps import ScalarTrap, indentation_hint, scalar_trap
from .yaml_marks import Loc, MarkedDocument


class _Complaint(NamedTuple):
    """One error of pydantic's, placed in the file and read."""

    loc: Loc  # as written in the file, union members left out
    reading: Reading
    error: ErrorDetails
    members: dict[Loc, str]  # the union member complaining, by the place of its union
    trap: ScalarTrap | None = None


def validate(document: MarkedDocument, file: str) -> tuple[Bot | None, list[SpecError]]:
    """The bot the document describes, or None and every problem found."""
    return validate_as(Bot, "a bot file", document, file)


M = TypeVar("M", bound=BaseModel)


def validate_as(
    root: type[M], what: str, document: MarkedDocument, file: str
) -> tuple[M | None, list[SpecError]]:
    """The `root` model the document describes (a bot, a canvas app), or None and every
    problem found, each told as for a bot file; `what` names the kind of file."""
    if not isinstance(document.data, dict):
        return None, [SpecError(f"{what} must be a mapping (key: value lines)", file)]
    try:
        return root.model_validate(document.data), []
    except ValidationError as exc:
        complaints = [_complaint(document, error, root) for error in exc.errors()]
        complaints = _explain_slips(document, _fitting_members(complaints), root)
        complaints = _without_split_items(document, complaints)
        return None, [_spec_error(document, file, c) for c in _merged(complaints)]


def _complaint(document: MarkedDocument, error: ErrorDetails, root: type[BaseModel]) -> _Complaint:
    raw_loc = tuple(error["loc"])
    tags = tag_positions(raw_loc, root)
    loc, members = real_loc(document, raw_loc, tags)
    loc = _at_discriminator(document, error, loc)
    if error["type"] == "missing":  # the missing key is not in the file, yet no union member
        members = real_loc(document, raw_loc[:-1], tags)[1]
    reading = message_for(error, root)
    trap = (
        scalar_trap(document, loc, error.get("input")) if error["type"] == "string_type" else None
    )
    if trap is not None:
        return _Complaint(loc, reading._replace(hint=trap.hint), error, members, trap)
    return _Complaint(loc, reading, error, members)


def _at_discriminator(document: MarkedDocument, error: ErrorDetails, loc: Loc) -> Loc:
    """An unknown `kind: textarea` is told at its value, not at the mapping holding it."""
    if error["type"] != "union_tag_invalid":
        return loc
    key = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
    return (*loc, key) if (*loc, key) in document.keys else loc


def _fitting_members(complaints: list[_Complaint]) -> list[_Complaint]:
    """Only the complaints of the union member that fits the value best.

    `model: {provider: openai, api_key: sk-…}` fits the mapping member, whose complaint is
    about `api_key`; the list member's "got a mapping; expected a list" would mislead. A
    member that takes the value's type fits better than one that does not, and of those,
    the one with fewer complaints; members that fit equally well are all reported.
    """
    unions: dict[Loc, dict[str, list[_Complaint]]] = {}
    for complaint in complaints:
        for place, member in complaint.members.items():
            unions.setdefault(place, {}).setdefault(member, []).append(complaint)
    worse: set[int] = set()
    for place, members in unions.items():
        if len(members) < 2:
            continue
        misfits = {member: _misfit(place, found) for member, found in members.items()}
        best = min(misfits.values())
        for member, found in members.items():
            if misfits[member] > best:
                worse.update(id(complaint) for complaint in found)
    return [complaint for complaint in complaints if id(complaint) not in worse]


def _misfit(place: Loc, complaints: list[_Complaint]) -> tuple[bool, int]:
    """How badly one union member fits the value at `place`: whether it wants another type,
    then how many complaints it has."""
    wrong_type = any(c.reading.wrong_type and c.loc == place for c in complaints)
    return wrong_type, len(complaints)


def _merged(complaints: list[_Complaint]) -> list[_Complaint]:
    """One complaint per value: a union's members, each expecting its own type, become
    `got 'x' (a string); expected a list or a mapping`."""
    kept: dict[tuple[Loc, str], _Complaint] = {}
    for complaint in complaints:
        key = (complaint.loc, complaint.reading.problem)
        first = kept.setdefault(key, complaint)
        if first is not complaint:
            kept[key] = first._replace(reading=_either(first.reading, complaint.reading))
    return list(kept.values())


def _either(first: Reading, other: Reading) -> Reading:
    """Two complaints about one value: the expectations of both, or the first as it is
    (the same unknown key, reported by two members of a union)."""
    if first.expected is None or other.expected is None:
        return first
    expected = first.expected
    if other.expected not in expected.split(" or "):
        expected += f" or {other.expected}"
    return first._replace(expected=expected, hint=first.hint or other.hint)


def _without_split_items(
    document: MarkedDocument, complaints: list[_Complaint]
) -> list[_Complaint]:
    """Leave out the unknown keys that are pieces of a text another complaint quotes whole:
    `{equals: Yes, book early}` makes `book early` a key of its own."""
    traps = [c.trap for c in complaints if c.trap is not None]
    return [c for c in complaints if not _split_from(document, c, traps)]


def _split_from(document: MarkedDocument, complaint: _Complaint, traps: list[ScalarTrap]) -> bool:
    mark = document.keys.get(complaint.loc)
    if complaint.error["type"] != "extra_forbidden" or mark is None:
        return False
    return any(trap.line == mark.line and mark.column in trap.columns for trap in traps)


def _explain_slips(
    document: MarkedDocument, complaints: list[_Complaint], root: type[BaseModel]
) -> list[_Complaint]:
    """An unknown key that belongs to the key above it, indented one level too shallow:
    its complaint says where to indent it, and the empty key's own complaint goes."""
    unknown = {c.loc for c in complaints if c.error["type"] == "extra_forbidden"}
    explained: set[Loc] = set()
    result: list[_Complaint] = []
    for complaint in complaints:
        owner = _owner(document, complaint, unknown, root) if complaint.loc in unknown else None
        hint = None if owner is None else indentation_hint(document, complaint.loc, owner)
        if owner is not None and hint is not None:
            complaint = complaint._replace(reading=complaint.reading._replace(hint=hint))
            explained.add(owner)
        result.append(complaint)
    return [c for c in result if not (c.loc in explained and c.reading.wrong_type)]


def _owner(
    document: MarkedDocument, complaint: _Complaint, unknown: set[Loc], root: type[BaseModel]
) -> Loc | None:
    """The known key written last before an unknown one, when the unknown key is one of
    its own keys and it is empty or a block mapping."""
    loc = complaint.loc
    parent, written = loc[:-1], document.keys.get(loc)
    if written is None:
        return None
    before = [
        ((mark.line, mark.column), key)
        for key, mark in document.keys.items()
        if key[:-1] == parent and key not in unknown and mark[:2] < written[:2]
    ]
    if not before:
        return None
    owner = max(before)[1]
    value: Any = _value_at(document.data, owner)
    if value is not None and not (isinstance(value, dict) and loc[-1] not in value):
        return None
    raw_owner = (*tuple(complaint.error["loc"])[:-1], owner[-1])
    return owner if str(loc[-1]) in allowed_keys(raw_owner, root) else None


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _spec_error(document: MarkedDocument, file: str, complaint: _Complaint) -> SpecError:
    loc, reading, error = complaint.loc, complaint.reading, complaint.error
    mark = position(document, loc, key=error["type"] == "extra_forbidden")
    place = loc_text(loc)
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, PatternError):
        line, column = offset_position(mark, document.lines, cause.pattern, cause.offset)
        snippet = SourceSnippet(cause.pattern, cause.offset)
        return SpecError(reading.message, file, line, column, place, reading.hint, snippet=snippet)
    return SpecError(reading.message, file, mark.line, mark.column, place, reading.hint)
