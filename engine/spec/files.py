"""Files sent with an answer (`files:` on a reply): a URL, or a text file from a template."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Discriminator, Field, Tag

from ._base import StrictModel, Template

SOURCE_KEYS = ("url", "template")
MAX_FILES = 20  # Poe's limit per message
FILE_NAME_PATTERN = r"^[^/\\\x00-\x1f]{1,200}$"
MIME_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(;.*)?$"


class _File(StrictModel):
    kind: ClassVar[str]
    content_type: str | None = Field(
        None,
        pattern=MIME_TYPE_PATTERN,
        description="MIME type; default: guessed from the name's extension.",
        examples=["text/csv"],
    )
    inline: bool = Field(
        False,
        description="Give the file an inline reference, so the reply's Markdown can show it "
        "in place: `![chart][{{ files['chart.png'].ref }}]`.",
    )


class UrlFile(_File):
    """A file Poe downloads from a URL (nothing is uploaded)."""

    kind: ClassVar[str] = "url"
    url: Template = Field(
        description="http(s) URL of the file (a template).",
        examples=["https://cdn.acme.example/manuals/{{ vars.model }}.pdf"],
    )
    name: str | None = Field(
        None,
        pattern=FILE_NAME_PATTERN,
        description="File name shown; default: the URL's last path segment.",
    )


class TemplateFile(_File):
    """A text file rendered from a template (CSV, Markdown, JSON...), uploaded to Poe."""

    kind: ClassVar[str] = "template"
    name: str = Field(
        pattern=FILE_NAME_PATTERN,
        description="File name; its extension gives the default content type.",
        examples=["report.csv"],
    )
    template: Template = Field(
        description="The file's content, a Jinja template over the context.",
        examples=["order,status\n{{ vars.order_id }},{{ vars.status }}\n"],
    )


def _source_of(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [key for key in SOURCE_KEYS if key in value]
        return present[0] if len(present) == 1 else None
    return getattr(value, "kind", None)


FileSpec = Annotated[
    Annotated[UrlFile, Tag("url")] | Annotated[TemplateFile, Tag("template")],
    Discriminator(
        _source_of,
        custom_error_type="file_source",
        custom_error_message="a file needs exactly one of `url` (a link) or `template` (its "
        "content)",
    ),
]
Files = Annotated[list[FileSpec], Field(max_length=MAX_FILES)]
FILES_DOC = (
    "Files sent with the answer, before its text: `{url: ...}` or `{name: ..., template: "
    "...}` (uploaded to Poe); in the reply, `files['<name>']` has its url and inline `ref`."
)
