"""One answer folded from its events, as a client sees it once the stream is over."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .events import Data, Error, Event, File, Meta, Replace, Suggest, Text


@dataclass
class Transcript:
    """The text (replacements applied), suggestions, files, stored metadata and error."""

    text: str = ""
    suggestions: list[str] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    metadata: str | None = None
    error: Error | None = None
    poe_suggests: bool = False

    def add(self, event: Event) -> None:
        if isinstance(event, Text):
            self.text += event.text
        elif isinstance(event, Replace):
            self.text = event.text
        elif isinstance(event, Suggest):
            self.suggestions.append(event.text)
        elif isinstance(event, File):
            self.files.append(event)
        elif isinstance(event, Data):
            self.metadata = event.metadata  # Poe keeps the last one
        elif isinstance(event, Error):
            self.error = event
        elif isinstance(event, Meta):
            self.poe_suggests = event.suggested_replies

    @classmethod
    def of(cls, events: Iterable[Event]) -> Transcript:
        transcript = cls()
        for event in events:
            transcript.add(event)
        return transcript
