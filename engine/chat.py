"""`python -m engine chat BOT`: try one bot in the terminal before deploying it.

The conversation goes through the same runtime and stream guard as the server, with the
real model providers, so what the terminal shows is what Poe users would see. Input and
output are plain text streams passed in, which keeps the whole loop testable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import mimetypes
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from urllib.parse import urlsplit

from .compiled import CompiledBot
from .errors import EngineError, SpecError
from .iterators import close_iterator
from .limits import Limiter
from .loader import BOT_SUFFIXES, LoadReport, load_paths
from .protocol.events import Error, Event, File, Replace, Text
from .protocol.guard import guarded
from .protocol.requests import Attachment, Message, QueryRequest
from .protocol.transcript import Transcript
from .runtime import run
from .runtime.files import preview
from .spec.tests import LANGUAGE_TAG
from .store import Store

__all__ = [
    "BrokenBot",
    "ChatSession",
    "RequestFields",
    "Terminal",
    "UnknownBot",
    "attachment_for",
    "check_language",
    "find_bot",
    "parse_param",
    "run_chat",
]

Responder = Callable[[CompiledBot, QueryRequest], Iterable[Event]]

USER_ID = "u-terminal"
PROMPT = "you> "
HELP = (
    "/reset starts a new conversation, /quit leaves (or Ctrl-D), /language TAG sets your "
    "language, /attach FILE|URL attaches a file to your next message; "
    "a number sends that suggested reply, // sends a message starting with /"
)
QUIT = frozenset({"/quit", "/exit", "/q"})
RESET, LANGUAGE, ATTACH = "/reset", "/language", "/attach"


# --- finding the bot ---------------------------------------------------------------------


class BrokenBot(EngineError):
    """The bot's file has errors; `report` holds that file's problems, as `validate` shows."""

    def __init__(self, report: LoadReport) -> None:
        super().__init__(f"{len(report.errors)} error(s) in the bot file")
        self.report = report


class UnknownBot(EngineError):
    """No bot of that name: the message lists the bots there are, for a usage error."""


def find_bot(target: str, bots_dir: str = "bots") -> tuple[CompiledBot, list[SpecError]]:
    """The bot named `target` in `bots_dir`, or loaded from `target` when it is a file path;
    with the warnings worth showing before chatting (an unset access key is not one: the
    terminal needs no key)."""
    if _is_path(target):
        report = _load_existing(target, "bot file")
        bot = next(iter(report.bots.values()), None)
    else:
        report = _load_existing(bots_dir, "bots folder", folder=True)
        bot = _by_name(report, target)
    if bot is None:
        raise _not_found(report, target, bots_dir)
    warnings = [w for w in _problems_of(report, bot.file) if w.loc != "access_key"]
    return bot, warnings


def _is_path(target: str) -> bool:
    return Path(target).suffix in BOT_SUFFIXES or "/" in target or "\\" in target


def _load_existing(path: str, kind: str, folder: bool = False) -> LoadReport:
    """Load a path that must exist (and be a folder when asked): a typo is a usage error."""
    found = Path(path)
    if not found.exists() or (folder and not found.is_dir()):
        raise UnknownBot(f"no such {kind}: {path}")
    return load_paths([found])


def _by_name(report: LoadReport, name: str) -> CompiledBot | None:
    """By the bot's name, else by its file name: `chat acme-help` works either way."""
    if name in report.bots:
        return report.bots[name]
    return next((b for b in report.bots.values() if Path(b.file).stem == name), None)


def _problems_of(report: LoadReport, file: str) -> list[SpecError]:
    return [problem for problem in report.problems if problem.file == file]


def _not_found(report: LoadReport, target: str, bots_dir: str) -> EngineError:
    """A broken file of that name shows its errors; otherwise the bots there are."""
    if _is_path(target):  # one file loaded, and it has errors
        return BrokenBot(LoadReport(problems=report.problems, files=1))
    broken = sorted({error.file for error in report.errors})
    for file in broken:
        if Path(file).stem == target:
            return BrokenBot(LoadReport(problems=_problems_of(report, file), files=1))
    names = ", ".join(sorted(report.bots)) or "none"
    message = f"no bot named {target!r} in {bots_dir}; bots there: {names}"
    if broken:
        message += f" (not loaded, they have errors: {', '.join(broken)})"
    return UnknownBot(message)


def parse_param(text: str) -> tuple[str, Any]:
    """`name=value`, the value read as JSON when it is JSON (`0.5`, `true`, `[1]`), else as
    the text itself, so `style=pixel` needs no quotes."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def check_language(tag: str) -> str:
    """The tag, if Poe could send it as the user's language (a BCP 47 tag); else ValueError."""
    if not LANGUAGE_TAG.fullmatch(tag):
        raise ValueError(f"got {tag!r}; expected a BCP 47 language tag such as en or pt-BR")
    return tag


def attachment_for(target: str) -> Attachment:
    """A file to attach, as Poe would send it: a URL as given, a local file as its `file:`
    URL (a text file with its text, which Poe extracts); the type guessed from the name."""
    if "://" in target:
        name = PurePosixPath(urlsplit(target).path).name or target
        return Attachment(url=target, name=name, content_type=_content_type(name))
    path = Path(target).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {target}")
    content_type = _content_type(path.name)
    text = None
    if content_type.startswith("text/"):
        text = path.read_text(encoding="utf-8", errors="replace")
    return Attachment(
        url=path.resolve().as_uri(),
        name=path.name,
        content_type=content_type,
        parsed_content=text,
    )


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


# --- the terminal ------------------------------------------------------------------------


class Terminal:
    """The chat's input and output; any text streams, so tests pass strings in and out."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self._stdin, self._stdout = stdin, stdout
        self.at_line_start = True

    @property
    def interactive(self) -> bool:
        return self._stdin.isatty()

    def write(self, text: str) -> None:
        """Write and flush at once: streamed chunks must show while the model is writing."""
        if not text:
            return
        self._stdout.write(text)
        self._stdout.flush()
        self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        """Finish a line left open by streamed text, so the next output starts fresh."""
        if not self.at_line_start:
            self.write("\n")

    def read(self, prompt: str) -> str | None:
        """One line without its newline; None at end of input."""
        if self._is_console():
            return self._read_console(prompt)
        self.write(prompt)
        line = self._stdin.readline()
        if not line:
            self.end_line()
            return None
        line = line.rstrip("\r\n")
        if not self.interactive:  # piped input is not echoed: show it, so output reads as a chat
            self.write(line + "\n")
        self.at_line_start = True
        return line

    def _is_console(self) -> bool:
        return self._stdin is sys.stdin and self._stdout is sys.stdout and self.interactive

    def _read_console(self, prompt: str) -> str | None:
        """`input()` on a real terminal, with readline's line editing and history."""
        with contextlib.suppress(ImportError):  # not on every platform; input() still works
            import readline  # noqa: F401  # imported for its side effect on input()
        self.at_line_start = False  # the prompt is on screen: Ctrl-C or Ctrl-D must end it
        try:
            line = input(prompt)
        except EOFError:
            self.end_line()
            return None
        self.at_line_start = True
        return line


# --- one answer --------------------------------------------------------------------------


class AnswerView:
    """Shows an answer as its events arrive: text as it streams, the rest on its own lines."""

    def __init__(self, terminal: Terminal, label: str) -> None:
        self._terminal, self._label = terminal, label
        self._shown = False

    def show(self, event: Event) -> None:
        if isinstance(event, Text):
            if not self._shown:
                self._open(f"{self._label}: ")
            self._terminal.write(event.text)
        elif isinstance(event, Replace):
            # Earlier text cannot be unprinted reliably (it may have scrolled away): the
            # new text goes on its own line, marked as replacing what came before.
            self._open(f"{self._label} (replaced): " if self._shown else f"{self._label}: ")
            self._terminal.write(event.text)
        elif isinstance(event, File):
            self._terminal.end_line()
            self._terminal.write(describe_file(event))
        elif isinstance(event, Error):
            self._terminal.end_line()
            self._terminal.write(f"error: {event.text} ({_retry_note(event)})\n")

    def _open(self, label: str) -> None:
        self._terminal.end_line()
        self._terminal.write(label)
        self._shown = True

    def finish(self, answer: Transcript) -> None:
        self._terminal.end_line()
        for number, suggestion in enumerate(answer.suggestions, start=1):
            self._terminal.write(f"  [{number}] {suggestion}\n")
        if answer.poe_suggests:
            self._terminal.write("  (Poe suggests replies to this answer itself)\n")


PREVIEW_LINES = 12  # lines of a file made by the bot shown in the terminal


def describe_file(event: File) -> str:
    """`file: name (type) url`; a file the bot made (never uploaded here: a `data:` URL)
    is shown by its size and its first lines instead of its URL."""
    ref = f" inline ref {event.inline_ref}" if event.inline_ref else ""
    head = f"file: {event.file_name} ({event.content_type}){ref}"
    if not event.url.startswith("data:"):
        return f"{head} {event.url}\n"
    data = base64.b64decode(event.url.partition(",")[2])
    lines = data.decode("utf-8", errors="replace").splitlines()
    shown = "".join(f"  | {line}\n" for line in lines[:PREVIEW_LINES])
    more = (
        f"  | ... {len(lines) - PREVIEW_LINES} more lines\n" if len(lines) > PREVIEW_LINES else ""
    )
    return f"{head}, {len(data):,} bytes, not uploaded:\n{shown}{more}"


def _retry_note(error: Error) -> str:
    note = "retry allowed" if error.allow_retry else "no retry"
    return f"{note}, {error.error_type}" if error.error_type else note


# --- the conversation --------------------------------------------------------------------


def runtime_responder() -> Responder:
    """The server's runtime with the real providers and timing (no scripted stand-ins),
    counting limits and keeping remembered vars in memory for this chat alone: `/reset`
    starts a new conversation, in which the bot recalls what it remembered."""
    limiter = Limiter(Store.from_url("memory://"))

    def respond(bot: CompiledBot, request: QueryRequest) -> Iterable[Event]:
        return run(bot, request, limiter=limiter, uploader=preview)

    return respond


@dataclass
class RequestFields:
    """What Poe's request says besides the conversation: the user's language and the ids.

    Conditions and templates read them as `language`, `user.id` and `conversation.id`.
    """

    language: str = "en"
    user_id: str = USER_ID
    conversation_id: str | None = None  # None: a new id for each conversation

    def shown(self) -> str:
        """The fields that differ from the defaults, for the banner."""
        changed = [
            ("language", self.language, "en"),
            ("user", self.user_id, USER_ID),
            ("conversation", self.conversation_id, None),
        ]
        return "".join(f", {name}: {value}" for name, value, default in changed if value != default)


class ChatSession:
    """The conversation Poe would resend on every message, kept between turns."""

    def __init__(
        self,
        bot: CompiledBot,
        params: dict[str, Any] | None = None,
        respond: Responder | None = None,
        fields: RequestFields | None = None,
    ) -> None:
        self.bot, self.params = bot, dict(params or {})
        self._respond = respond or runtime_responder()
        self.fields = fields or RequestFields()
        self.history: list[Message] = []
        self.suggestions: list[str] = []
        self.attachments: list[Attachment] = []  # for the next message
        self.conversation_id = ""
        self.reset()

    def reset(self) -> None:
        """A new conversation: no history, suggestions or attachments, a new conversation id
        (unless one was given); the language stays."""
        self.history.clear()
        self.suggestions, self.attachments = [], []
        self.conversation_id = self.fields.conversation_id or f"c-{uuid.uuid4().hex[:12]}"

    def request_for(self, text: str) -> QueryRequest:
        """The whole conversation with `text` as the new user message, as Poe sends it; the
        files attached since the last message go with it."""
        number = len(self.history) + 1
        message = Message(
            role="user",
            content=text,
            parameters=self.params,
            attachments=self.attachments,
            message_id=f"m-{number}",
        )
        self.attachments = []
        self.history.append(message)
        return QueryRequest(
            query=list(self.history),
            user_id=self.fields.user_id,
            conversation_id=self.conversation_id,
            message_id=message.message_id,
            language_code=self.fields.language,
        )

    def send(self, text: str, terminal: Terminal) -> Transcript:
        """Stream the bot's answer to the terminal, then keep it in the history."""
        request = self.request_for(text)
        answer, view = Transcript(), AnswerView(terminal, self.bot.name)
        events = guarded(self._respond(self.bot, request), self.bot.name)
        try:
            for event in events:
                answer.add(event)
                view.show(event)
        finally:
            close_iterator(events)  # Ctrl-C mid-answer: stop the model call now
        view.finish(answer)
        number = len(self.history) + 1
        self.history.append(
            Message(
                role="bot", content=answer.text, metadata=answer.metadata, message_id=f"m-{number}"
            )
        )
        self.suggestions = answer.suggestions
        return answer

    def suggestion(self, line: str) -> str | None:
        """The suggested reply a bare number picks, if there is one by that number."""
        text = line.strip()
        if text.isdigit() and 1 <= int(text) <= len(self.suggestions):
            return self.suggestions[int(text) - 1]
        return None


# --- the loop ----------------------------------------------------------------------------


def run_chat(
    bot: CompiledBot,
    params: dict[str, Any],
    stdin: TextIO,
    stdout: TextIO,
    warnings: Iterable[SpecError] = (),
    respond: Responder | None = None,
    fields: RequestFields | None = None,
) -> int:
    """Chat until /quit, end of input or Ctrl-C; the exit code (always 0: leaving is fine)."""
    terminal = Terminal(stdin, stdout)
    session = ChatSession(bot, params, respond, fields)
    for warning in warnings:
        terminal.write(f"{warning}\n")
    terminal.write(_banner(bot, params, session.fields))
    _greet(bot, terminal)
    try:
        _loop(session, terminal)
    except KeyboardInterrupt:
        terminal.end_line()
    return 0


def _banner(bot: CompiledBot, params: dict[str, Any], fields: RequestFields) -> str:
    shown = ", ".join(f"{name}={json.dumps(value)}" for name, value in params.items())
    with_params = f", params: {shown}" if shown else ""
    return f"Chatting with {bot.name} ({bot.file}){fields.shown()}{with_params}\n{HELP}\n\n"


def _greet(bot: CompiledBot, terminal: Terminal) -> None:
    if bot.spec.greeting:
        terminal.write(f"{bot.name}: {bot.spec.greeting.strip()}\n\n")


def _loop(session: ChatSession, terminal: Terminal) -> None:
    while (line := terminal.read(PROMPT)) is not None:
        command = line.strip()
        if not command:
            continue
        if command in QUIT:
            return
        if command.startswith("/") and not command.startswith("//"):
            _command(session, terminal, command)
            continue
        session.send(_message_for(session, line, terminal), terminal)
        terminal.write("\n")


def _command(session: ChatSession, terminal: Terminal, command: str) -> None:
    name, _, argument = command.partition(" ")
    argument = argument.strip()
    if name == RESET:
        session.reset()
        terminal.write("(new conversation)\n\n")
        _greet(session.bot, terminal)
    elif name == LANGUAGE:
        terminal.write(_language(session, argument))
    elif name == ATTACH:
        terminal.write(_attach(session, argument))
    else:
        terminal.write(f"unknown command {name}; {HELP}\n")


def _language(session: ChatSession, tag: str) -> str:
    """`/language` shows the user's language; `/language pt-BR` changes it."""
    if not tag:
        return f"(language: {session.fields.language})\n"
    try:
        session.fields.language = check_language(tag)
    except ValueError as exc:
        return f"{exc}\n"
    return f"(language: {tag}, from your next message)\n"


def _attach(session: ChatSession, target: str) -> str:
    """`/attach FILE|URL` adds a file to the next message."""
    if not target:
        return "usage: /attach FILE or /attach URL (sent with your next message)\n"
    try:
        attachment = attachment_for(target)
    except (ValueError, OSError) as exc:
        return f"cannot attach: {exc}\n"
    session.attachments.append(attachment)
    return f"(attached {attachment.name}, {attachment.content_type}, to your next message)\n"


def _message_for(session: ChatSession, line: str, terminal: Terminal) -> str:
    """The text to send: a picked suggestion (shown, since only its number was typed), or
    the line as typed, `//` standing for a leading `/`."""
    suggestion = session.suggestion(line)
    if suggestion is not None:
        terminal.write(f"  -> {suggestion}\n")
        return suggestion
    return line.lstrip()[1:] if line.lstrip().startswith("//") else line
