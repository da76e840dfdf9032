"""`python -m engine chat`: a terminal conversation through the server's runtime."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.chat import ChatSession, Terminal, find_bot, parse_param, run_chat
from engine.cli import main
from engine.compiled import CompiledBot
from engine.protocol.events import Data, Event, Meta, Replace, Suggest, Text
from engine.protocol.requests import QueryRequest

from .conftest import BOTS_DIR, REPO

Folder = Callable[[dict[str, str]], Path]

SCRIPTED = """\
    name: scripted
    greeting: Ask me anything.
    model: {provider: scripted, replies: ["one two three", "four five"], delay: 0}
    routes:
      - if: "message == 'recap'"
        reply: "{{ history | length }} earlier; I said: {{ history[-1].content }}"
      - if: "message == 'params'"
        reply: "style={{ params.style }} next={{ params.n + 1 }} flag={{ params.flag }}"
      - if: "message == 'refuse'"
        error: {text: Not today., allow_retry: true, error_type: user_caused_error}
      - llm: {}
        suggest: [Tell me more, Thanks]
    """
BROKEN = """\
    routes:
      - reply: '{{ mesage }}'
        sugest: [x]
    """


def chat(*args: str, input: str = "/quit\n", env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["chat", *args], input=input, env=env)


def scripted_bot(bots_dir: Folder, text: str = SCRIPTED) -> Path:
    return bots_dir({"scripted.yaml": text}) / "scripted.yaml"


def in_order(output: str, *parts: str) -> None:
    """Every part appears, each after the one before."""
    position = 0
    for part in parts:
        found = output.find(part, position)
        assert found != -1, f"{part!r} not found after position {position} in:\n{output}"
        position = found + len(part)


# --- the example bots --------------------------------------------------------------------


def test_hello_greets_answers_picks_by_number_and_resets() -> None:
    result = chat("hello", "--bots", str(BOTS_DIR), input="hi\n1\n/reset\nhello\n/quit\n")
    assert result.exit_code == 0, result.output
    greeting = "hello: Hello! I'm a tiny bot defined in one YAML file. Say anything."
    in_order(
        result.output,
        "Chatting with hello",
        greeting,
        "you> hi\nhello: Hello! You said: hi\n  [1] Hi again\n",
        "you> 1\n  -> Hi again\nhello: Hello again! You said: Hi again\n  [1] Goodbye\n",
        "you> /reset\n(new conversation)\n",
        greeting,  # greeted again, and the turn count starts over:
        "you> hello\nhello: Hello! You said: hello\n",
        "you> /quit",
    )


def test_acme_help_lists_suggestions_and_shows_errors() -> None:
    typed = "I want a refund\n2\nTalk to a human\nmy password is x\n/quit\n"
    result = chat("acme-help", input=typed)
    assert result.exit_code == 0, result.output
    in_order(
        result.output,
        "acme-help: Refunds take **5-7 days**",
        "  [1] Start a refund\n  [2] How long is shipping?\n",
        "  -> How long is shipping?\nacme-help: Standard shipping takes 3-5 business days",
        "  [1] I want a refund\n",
        "you> Talk to a human\n"
        "error: Our team is offline right now. Please email help@acme.example. (no retry)\n",
        "you> my password is x\nerror: ",
        "(no retry, user_caused_error)\n",
    )


def test_a_bot_file_path_works_and_so_does_end_of_input() -> None:
    result = chat(str(BOTS_DIR / "hello.yaml"), input="hi\n")
    assert result.exit_code == 0
    assert "hello: Hello! You said: hi\n" in result.output


def test_a_number_without_such_a_suggestion_is_sent_as_typed() -> None:
    result = chat("hello", input="7\n")
    assert "hello: Hello! You said: 7\n" in result.output


def test_commands_are_not_sent_to_the_bot_and_double_slash_escapes() -> None:
    result = chat("hello", input="\n/nope\n//etc\n")
    assert result.exit_code == 0
    assert "unknown command /nope;" in result.output
    assert "hello: Hello! You said: /etc\n" in result.output
    assert "You said: /nope" not in result.output


# --- a model-backed bot ------------------------------------------------------------------


def test_a_scripted_model_streams_its_turns_then_the_suggestions(bots_dir: Folder) -> None:
    path = scripted_bot(bots_dir)
    result = chat(str(path), input="hi\n1\n/reset\nagain\n")
    assert result.exit_code == 0, result.output
    in_order(
        result.output,
        "scripted: Ask me anything.",
        "you> hi\nscripted: one two three\n  [1] Tell me more\n  [2] Thanks\n",
        "  -> Tell me more\nscripted: four five\n",
        "(new conversation)",
        "you> again\nscripted: one two three\n",  # turn 1 again after /reset
    )


def test_the_history_carries_the_bots_answers(bots_dir: Folder) -> None:
    result = chat(str(scripted_bot(bots_dir)), input="hi\nrecap\n")
    assert "scripted: 2 earlier; I said: one two three\n" in result.output


def test_chunks_are_written_and_flushed_one_by_one(bots_dir: Folder) -> None:
    bot, _ = find_bot(str(scripted_bot(bots_dir)))
    out = RecordingStream()
    assert run_chat(bot, {}, io.StringIO("hi\n"), out) == 0
    answer = out.writes.index("scripted: ")
    assert out.writes[answer : answer + 4] == ["scripted: ", "one ", "two ", "three"]
    assert out.flushes >= len(out.writes)


def test_params_are_sent_with_every_message(bots_dir: Folder) -> None:
    path = str(scripted_bot(bots_dir))
    params = ["--param", "style=pixel", "--param", "n=3", "--param", "flag=true"]
    result = chat(path, *params, input="params\n")
    assert result.exit_code == 0, result.output
    assert 'params: style="pixel", n=3, flag=true' in result.output
    assert "scripted: style=pixel next=4 flag=True\n" in result.output


def test_a_param_without_a_value_is_a_usage_error() -> None:
    result = chat("hello", "--param", "style")
    assert result.exit_code == 2
    assert "expected NAME=VALUE, got 'style'" in result.output


def test_parse_param_reads_json_when_it_can() -> None:
    assert parse_param("a=1.5") == ("a", 1.5)
    assert parse_param("a=[1, 2]") == ("a", [1, 2])
    assert parse_param("a=x=y") == ("a", "x=y")
    assert parse_param("a=") == ("a", "")


def test_an_error_route_shows_its_text_type_and_retry(bots_dir: Folder) -> None:
    result = chat(str(scripted_bot(bots_dir)), input="refuse\n")
    assert "error: Not today. (retry allowed, user_caused_error)\n" in result.output


def test_a_failing_model_shows_the_error_text(bots_dir: Folder) -> None:
    """The real OpenAI provider, pointed at a closed port: no scripted stand-in."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = scripted_bot(
        bots_dir,
        f"""\
        model:
          provider: openai
          name: gpt-test
          base_url: http://127.0.0.1:{port}/v1
          api_key: ${{CHAT_TEST_KEY}}
          retries: 0
        routes:
          - llm: {{}}
        """,
    )
    result = chat(str(path), input="hi\n", env={"CHAT_TEST_KEY": "k"})
    assert result.exit_code == 0
    assert "error: Sorry, the model behind this bot is not answering right now." in result.output
    assert "(retry allowed)" in result.output


POLYGLOT = """\
    name: polyglot
    routes:
      - if: "starts_with(language, 'pt')"
        reply: "Olá, {{ user.id }} ({{ conversation.id }}, {{ language }})"
      - if: "length(attachments) > `0`"
        reply: >-
          {% for a in attachments %}[{{ a.name }} {{ a.content_type }} {{ a.url }}
          {{ a.parsed_content | tojson }}]{% endfor %}
      - reply: "Hello, {{ user.id }} ({{ conversation.id }}, {{ language }})"
    """


def test_the_language_and_ids_are_set_by_options_and_the_language_by_a_command(
    bots_dir: Folder,
) -> None:
    path = str(bots_dir({"polyglot.yaml": POLYGLOT}) / "polyglot.yaml")
    options = ["--language", "pt-BR", "--user-id", "u-42", "--conversation-id", "c-7"]
    typed = "oi\n/language\n/language en_GB\n/language en-GB\nhello\n/reset\nhi\n"
    result = chat(path, *options, input=typed)
    assert result.exit_code == 0, result.output
    in_order(
        result.output,
        "Chatting with polyglot (",
        "), language: pt-BR, user: u-42, conversation: c-7\n",
        "you> oi\npolyglot: Olá, u-42 (c-7, pt-BR)\n",
        "you> /language\n(language: pt-BR)\n",
        "you> /language en_GB\ngot 'en_GB'; expected a BCP 47 language tag such as en or pt-BR\n",
        "you> /language en-GB\n(language: en-GB, from your next message)\n",
        "you> hello\npolyglot: Hello, u-42 (c-7, en-GB)\n",
        # A new conversation keeps the language, and the conversation id given.
        "you> /reset\n(new conversation)\n",
        "you> hi\npolyglot: Hello, u-42 (c-7, en-GB)\n",
    )


def test_by_default_the_language_is_english_and_each_conversation_has_its_own_id(
    bots_dir: Folder,
) -> None:
    path = str(bots_dir({"polyglot.yaml": POLYGLOT}) / "polyglot.yaml")
    result = chat(path, input="hi\n/reset\nhi\n")
    assert result.exit_code == 0, result.output
    assert f"Chatting with polyglot ({path})\n" in result.output
    ids = re.findall(r"polyglot: Hello, u-terminal \((c-[0-9a-f]{12}), en\)\n", result.output)
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_language_poe_could_not_send_is_a_usage_error() -> None:
    result = chat("hello", "--language", "english")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--language': got 'english'; "
        "expected a BCP 47 language tag such as en or pt-BR"
    ) in result.output


def test_attach_sends_files_with_the_next_message_only(bots_dir: Folder, tmp_path: Path) -> None:
    path = str(bots_dir({"polyglot.yaml": POLYGLOT}) / "polyglot.yaml")
    note = tmp_path / "my note.txt"
    note.write_text("héllo\n", encoding="utf-8")
    typed = (
        f"/attach {note}\n/attach https://x.invalid/pics/cat.png?size=2\n"
        f"/attach {tmp_path}/none.png\n/attach\nfiles\nagain\n"
    )
    result = chat(path, input=typed)
    assert result.exit_code == 0, result.output
    in_order(
        result.output,
        f"you> /attach {note}\n(attached my note.txt, text/plain, to your next message)\n",
        "(attached cat.png, image/png, to your next message)\n",
        f"cannot attach: no such file: {tmp_path}/none.png\n",
        "you> /attach\nusage: /attach FILE or /attach URL (sent with your next message)\n",
        f'you> files\npolyglot: [my note.txt text/plain {note.as_uri()} "h\\u00e9llo\\n"]'
        "[cat.png image/png https://x.invalid/pics/cat.png?size=2 null]\n",
        "you> again\npolyglot: Hello, u-terminal (",
    )


def test_an_image_can_be_attached_for_image_studio() -> None:
    """image-studio refuses a message without an image: /attach is how to try it here."""
    typed = "make it pop\n/attach https://x.invalid/cat.png\nmake it pop\n"
    result = chat("image-studio", "--param", "style=pixel", input=typed)
    assert result.exit_code == 0, result.output
    in_order(
        result.output,
        "error: Please attach one or two images (PNG, JPEG or WebP) and say what to change.",
        "image-studio: **Plan** (1 image):\n- cat.png\nStyle **pixel** (gameboy palette)",
        "Edit: make it pop\n",
    )


# --- finding the bot ---------------------------------------------------------------------


def test_an_unknown_bot_is_a_usage_error_listing_the_bots() -> None:
    result = chat("nobody")
    assert result.exit_code == 2
    assert "no bot named 'nobody' in bots; bots there: " in result.output
    assert "acme-help" in result.output and "hello" in result.output


def test_a_missing_file_or_folder_is_a_usage_error(tmp_path: Path) -> None:
    assert chat(str(tmp_path / "none.yaml")).exit_code == 2
    result = chat("hello", "--bots", str(tmp_path / "none"))
    assert result.exit_code == 2
    assert "no such bots folder" in result.output


def test_a_broken_bot_prints_its_problems_like_validate(bots_dir: Folder) -> None:
    folder = bots_dir({"broken.yaml": BROKEN, "fine.yaml": "routes: [{reply: ok}]\n"})
    validated = CliRunner().invoke(main, ["validate", str(folder / "broken.yaml")])
    assert validated.exit_code == 1
    by_path = chat(str(folder / "broken.yaml"))
    by_name = chat("broken", "--bots", str(folder))
    assert by_path.exit_code == by_name.exit_code == 1
    assert by_path.output == by_name.output == validated.output
    assert "Chatting" not in by_path.output


def test_other_broken_files_are_named_when_the_bot_is_unknown(bots_dir: Folder) -> None:
    folder = bots_dir({"broken.yaml": BROKEN, "fine.yaml": "routes: [{reply: ok}]\n"})
    result = chat("other", "--bots", str(folder))
    assert result.exit_code == 2
    assert "bots there: fine (not loaded, they have errors: " in result.output
    assert chat("fine", "--bots", str(folder), input="x\n").output.count("fine: ok") == 1


def test_a_bot_is_found_by_file_name_too_and_useful_warnings_shown(bots_dir: Folder) -> None:
    folder = bots_dir(
        {
            "file-name.yaml": """\
            name: declared
            access_key: ${CHAT_TEST_UNSET_ACCESS}
            model: {provider: openai, name: m, api_key: "${CHAT_TEST_UNSET_MODEL}"}
            routes: [{reply: ok}]
            """
        }
    )
    result = chat("file-name", "--bots", str(folder))
    assert result.exit_code == 0
    assert "Chatting with declared" in result.output
    assert "CHAT_TEST_UNSET_MODEL is not set" in result.output
    assert "CHAT_TEST_UNSET_ACCESS" not in result.output  # the terminal needs no access key


# --- the session, with the events given directly ------------------------------------------


def events_of(*events: Event) -> Callable[[CompiledBot, QueryRequest], Iterator[Event]]:
    def respond(_bot: CompiledBot, _request: QueryRequest) -> Iterator[Event]:
        yield from events

    return respond


def test_replace_reprints_and_data_stays_on_the_bots_message(
    make_bot: Callable[..., CompiledBot],
) -> None:
    bot = make_bot("name: b\nroutes: [{reply: x}]\n")
    seen: list[QueryRequest] = []
    events = events_of(Meta(), Text("draft"), Replace("final"), Data('{"n": 1}'), Suggest("s"))

    def respond(bot: CompiledBot, request: QueryRequest) -> Iterator[Event]:
        seen.append(request)
        return iter(events(bot, request))

    out = io.StringIO()
    session, terminal = ChatSession(bot, {"k": 1}, respond), Terminal(io.StringIO(), out)
    session.send("one", terminal)
    session.send("two", terminal)
    assert out.getvalue().startswith("b: draft\nb (replaced): final\n  [1] s\n")
    last = seen[-1].query
    assert [(m.role, m.content, m.metadata) for m in last] == [
        ("user", "one", None),
        ("bot", "final", '{"n": 1}'),
        ("user", "two", None),
    ]
    assert last[0].parameters == last[2].parameters == {"k": 1}


def test_an_empty_answer_is_shown_as_the_guards_error(
    make_bot: Callable[..., CompiledBot],
) -> None:
    bot = make_bot("name: b\nroutes: [{reply: x}]\n")
    out = io.StringIO()
    ChatSession(bot, respond=events_of(Meta())).send("hi", Terminal(io.StringIO(), out))
    assert out.getvalue() == (
        "error: The bot returned an empty answer. Please try again. (retry allowed)\n"
    )


def test_ctrl_c_mid_answer_stops_the_answer_and_exits_cleanly(
    make_bot: Callable[..., CompiledBot],
) -> None:
    bot = make_bot("name: b\nroutes: [{reply: x}]\n")
    closed: list[bool] = []

    def respond(_bot: CompiledBot, _request: QueryRequest) -> Iterator[Event]:
        try:
            yield Meta()
            yield Text("partial")
            yield Text(" never shown")
        finally:
            closed.append(True)

    class InterruptedWhilePrinting(io.StringIO):
        def write(self, text: str) -> int:
            written = super().write(text)
            if text == "partial":
                raise KeyboardInterrupt
            return written

    out = InterruptedWhilePrinting()
    assert run_chat(bot, {}, io.StringIO("hi\nnever sent\n"), out, respond=respond) == 0
    assert closed == [True]  # the answer (and any model call behind it) was stopped
    assert out.getvalue().endswith("you> hi\nb: partial\n")


def test_ctrl_c_at_the_prompt_exits_with_code_0(make_bot: Callable[..., CompiledBot]) -> None:
    class Interrupted(io.StringIO):
        def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
            raise KeyboardInterrupt

    bot = make_bot("name: b\nroutes: [{reply: x}]\n")
    out = io.StringIO()
    assert run_chat(bot, {}, Interrupted(), out) == 0
    assert out.getvalue().endswith("you> \n")


class RecordingStream(io.StringIO):
    """Remembers each write and counts flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


# --- in a real terminal ------------------------------------------------------------------

SLOW = """\
    name: slow
    model: {provider: scripted, replies: ["alpha beta gamma delta omega"], delay: 0.2}
    routes: [{llm: {}}]
    """


class PtyReader:
    """The output of a process on a pseudo-terminal, read as it arrives."""

    def __init__(self, fd: int) -> None:
        self.fd, self.text = fd, ""

    def until(self, pattern: str, timeout: float = 8.0) -> float:
        """Read until `pattern` (a regex) shows; the moment it did."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never appeared in {self.text!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.text += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the other side closed (Linux raises EIO)
                    assert re.search(pattern, self.text), self.text
        return time.monotonic()


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_chunks_reach_a_real_terminal_before_the_answer_is_complete(tmp_path: Path) -> None:
    bot = tmp_path / "slow.yaml"
    bot.write_text(textwrap.dedent(SLOW), encoding="utf-8")
    # As users run it: buffered output (the streaming must flush), no fancy terminal codes.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    env["TERM"] = "dumb"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "chat", str(bot)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=REPO,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    reader = PtyReader(controller)
    try:
        reader.until(r"you> ")
        os.write(controller, b"hi\n")
        first = reader.until(r"slow: alpha")
        assert "omega" not in reader.text  # the first chunk is on screen, the last not yet
        last = reader.until(r"omega")
        assert last - first > 0.4  # four more chunks, 0.2 s apart
        reader.until(r"(?s)you> .*you> ")
        os.write(controller, b"again\n")
        reader.until(r"(?s)omega.*slow: alpha")
        process.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the second answer
        assert process.wait(timeout=5) == 0
        reader.until(r"(?s)omega.*slow: alpha.*\n")
        assert reader.text.count("omega") == 1
        assert "Traceback" not in reader.text and "Aborted" not in reader.text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def test_a_chat_counts_limits_and_recalls_remembered_vars_after_a_reset(
    make_bot: Callable[..., CompiledBot],
) -> None:
    bot = make_bot(
        """
        name: counted
        limits: {messages: 3/minute}
        remember: {vars: [name]}
        routes:
          - if: "message == 'me'"
            flow: me
          - reply: "hi {{ vars.get('name', 'stranger') }}"
        flows:
          me:
            - set: {name: Ana}
            - reply: saved
        """
    )
    out = io.StringIO()
    assert run_chat(bot, {}, io.StringIO("hi\nme\n/reset\nhi\nagain\n"), out) == 0
    in_order(
        out.getvalue(),
        "counted: hi stranger",
        "counted: saved",
        "counted: hi Ana",
        "error: You have reached this bot's limit of 3 messages per minute. Try again in 1 "
        "minute. (retry allowed)",
    )
