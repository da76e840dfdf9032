"""Hot reload: the registry's last-good rule, reload_app on a running app, SIGHUP on the
production server during an open answer, and the development server's file watcher."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from flask import Flask

from engine.errors import SpecErrors
from engine.loader import BotRegistry, load_paths
from engine.settings import Settings
from engine.spec.routes import ReplyRoute
from engine.web import EngineState, StartupError, create_app, reload_app

from ._poe import query, user
from ._server import Server, free_port, wait_for
from .conftest import REPO

Folder = Callable[[dict[str, str]], Path]


def rule_bot(reply: str, name: str | None = None) -> str:
    return (f"name: {name}\n" if name else "") + f"routes:\n  - reply: {reply}\n"


BROKEN = "routes:\n  - reply: '{{ message'\n"


def write(path: Path, text: str) -> None:
    """Rewrite a file as an editor saving in place does."""
    path.write_text(textwrap.dedent(text), encoding="utf-8")


# --- the registry ---------------------------------------------------------------------


@pytest.fixture
def folder(bots_dir: Folder) -> Path:
    return bots_dir({"a.yaml": rule_bot("A one"), "b.yaml": rule_bot("B one")})


def replies(registry: BotRegistry) -> dict[str, str]:
    """Each bot's reply, the one route of the bots here."""
    found = {}
    for name, bot in registry.bots.items():
        route = bot.spec.routes[0]
        assert isinstance(route, ReplyRoute)
        found[name] = str(route.reply)
    return found


def test_a_first_load_gives_what_load_paths_gives(bots_dir: Folder) -> None:
    files = {
        "a.yaml": rule_bot("A"),
        "b.yaml": rule_bot("B", name="a"),  # the name of a.yaml's bot: an error on b.yaml
        "c.yaml": BROKEN,
        "d.yaml": "routes:\n  - if: \"message == 'x'\"\n    reply: x\n",  # a warning
    }
    folder = bots_dir(files)
    report = BotRegistry([folder], {}).load(jobs=2)
    expected = load_paths([folder], {}, jobs=1)
    assert list(report.bots) == list(expected.bots) == ["a", "d"]
    assert list(map(str, report.problems)) == list(map(str, expected.problems))
    assert "bot name 'a' is already used by" in str(report.errors[0])
    assert report.files == expected.files == 4


def test_a_good_edit_is_served_and_other_bots_are_not_loaded_again(folder: Path) -> None:
    registry = BotRegistry([folder], {})
    registry.load()
    other = registry.bots["b"]
    write(folder / "a.yaml", rule_bot("A two"))
    report = registry.refresh()
    assert replies(registry) == {"a": "A two", "b": "B one"}
    assert registry.bots["b"] is other  # not loaded again
    assert report.updated == (str(folder / "a.yaml"),)
    assert (report.added, report.removed, report.kept_last_good) == ((), (), ())
    assert not registry.refresh().changed  # nothing changed since


def test_a_rewrite_with_the_same_text_changes_nothing(folder: Path) -> None:
    registry = BotRegistry([folder], {})
    registry.load()
    bot = registry.bots["a"]
    write(folder / "a.yaml", rule_bot("A one"))
    assert not registry.refresh().changed
    assert registry.bots["a"] is bot


def test_a_broken_edit_keeps_the_last_good_bot_and_records_its_errors(folder: Path) -> None:
    registry = BotRegistry([folder], {})
    registry.load()
    write(folder / "a.yaml", BROKEN)
    report = registry.refresh()
    assert replies(registry) == {"a": "A one", "b": "B one"}
    assert report.kept_last_good == (str(folder / "a.yaml"),)
    assert report.updated == report.not_served == ()
    [error] = registry.problems
    assert str(error).startswith(f"{folder / 'a.yaml'}:2:")
    assert report.problems == {str(folder / "a.yaml"): (error,)}
    write(folder / "a.yaml", rule_bot("A fixed"))
    report = registry.refresh()
    assert replies(registry)["a"] == "A fixed"
    assert registry.problems == []
    assert report.updated == (str(folder / "a.yaml"),)


def test_a_new_file_is_added_and_a_new_broken_one_is_listed_unserved(folder: Path) -> None:
    registry = BotRegistry([folder], {})
    registry.load()
    write(folder / "c.yaml", rule_bot("C"))
    write(folder / "d.yaml", BROKEN)
    report = registry.refresh()
    assert replies(registry) == {"a": "A one", "b": "B one", "c": "C"}
    assert report.added == ("c",)
    assert report.not_served == (str(folder / "d.yaml"),)
    assert [p.file for p in registry.problems] == [str(folder / "d.yaml")]


def test_a_deleted_file_is_dropped_with_its_problems(folder: Path) -> None:
    write(folder / "c.yaml", BROKEN)
    registry = BotRegistry([folder], {})
    registry.load()
    (folder / "a.yaml").unlink()
    (folder / "c.yaml").unlink()
    report = registry.refresh()
    assert list(registry.bots) == ["b"]
    assert report.removed == ("a",)
    assert report.deleted == (str(folder / "a.yaml"), str(folder / "c.yaml"))
    assert registry.problems == []


def test_a_name_clash_is_an_error_on_the_newer_file_only(folder: Path) -> None:
    registry = BotRegistry([folder], {})
    registry.load()
    write(folder / "0-new.yaml", rule_bot("impostor", name="b"))  # first in name order
    report = registry.refresh()
    assert replies(registry) == {"a": "A one", "b": "B one"}
    assert report.not_served == (str(folder / "0-new.yaml"),)
    [error] = registry.problems
    assert error.file == str(folder / "0-new.yaml")
    assert f"bot name 'b' is already used by {folder / 'b.yaml'}" in str(error)
    # The edit of a served bot to a taken name keeps its last good version.
    write(folder / "a.yaml", rule_bot("A as b", name="b"))
    assert registry.refresh().kept_last_good == (str(folder / "a.yaml"),)
    assert replies(registry) == {"a": "A one", "b": "B one"}
    # Once the name is free, the file that wanted it gets it.
    (folder / "b.yaml").unlink()
    registry.refresh()
    assert replies(registry) == {"b": "impostor", "a": "A one"}


# --- reload_app on a running app ------------------------------------------------------


def ask(app: Flask, name: str, text: str = "hi") -> str:
    response = app.test_client().post(
        f"/{name}", json=query(user(text)), headers={"Accept": "application/json"}
    )
    if response.status_code != 200:
        return f"{response.status_code}"
    return "".join(m["text"] for m in response.get_json()["messages"])


def state(app: Flask) -> EngineState:
    engine = app.extensions["engine"]
    assert isinstance(engine, EngineState)
    return engine


def test_reload_app_swaps_the_bots_keeping_what_did_not_change(
    folder: Path, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(folder)
    before = state(app)
    write(folder / "a.yaml", rule_bot("A two"))
    write(folder / "c.yaml", rule_bot("C"))
    (folder / "b.yaml").unlink()
    caplog.clear()
    with caplog.at_level("INFO", "engine.web"):
        reload_app(app)
    assert (ask(app, "a"), ask(app, "c"), ask(app, "b")) == ("A two", "C", "404")
    after = state(app)
    assert after.version == before.version + 1
    assert after.settings is before.settings
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"reloaded {folder / 'a.yaml'}", "added bot c", "removed bot b"]
    write(folder / "c.yaml", rule_bot("C"))  # the same text: nothing to swap
    reload_app(app)
    assert state(app) is after


def test_a_broken_edit_keeps_answering_and_logs_its_errors_as_validate_prints_them(
    folder: Path, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(folder)
    body = state(app).settings_bodies["b"]
    write(folder / "a.yaml", BROKEN)
    caplog.clear()
    with caplog.at_level("INFO", "engine.web"):
        reload_app(app)
    assert ask(app, "a") == "A one"
    [error] = state(app).problems
    assert [r.getMessage() for r in caplog.records if r.name == "engine.web"] == [
        f"{folder / 'a.yaml'}: 1 error; its last good version keeps answering",
        str(error),
    ]
    assert state(app).settings_bodies["b"] is body  # unchanged bots are not encoded again
    assert state(app).version == 1


def test_keep_going_serves_the_good_bots_beside_a_broken_file(
    folder: Path, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    write(folder / "c.yaml", BROKEN)
    with pytest.raises(SpecErrors):
        make_app(folder)
    with caplog.at_level("INFO", "engine.web"):
        app = create_app(folder, Settings(state_dir=folder / "state"), {}, keep_going=True)
    assert sorted(state(app).bots) == ["a", "b"]
    assert [p.file for p in state(app).problems] == [str(folder / "c.yaml")]
    assert f"{folder / 'c.yaml'}: 1 error; not served" in caplog.messages
    write(folder / "c.yaml", rule_bot("C"))
    assert reload_app(app).added == ("c",)
    assert ask(app, "c") == "C"
    assert state(app).problems == ()


def test_the_playground_refuses_to_start_off_loopback_without_a_token(folder: Path) -> None:
    settings = Settings(host="0.0.0.0", playground=True)  # noqa: S104 - never bound here
    with pytest.raises(StartupError, match="the playground needs PLAYGROUND_TOKEN off loopback"):
        create_app(folder, settings, {})


def test_the_trace_token_exists_only_with_the_playground(
    folder: Path, make_app: Callable[..., Flask]
) -> None:
    assert state(make_app(folder)).trace_token is None


# --- SIGHUP on the production server --------------------------------------------------

SLOW = """\
    model: {provider: scripted, replies: ["%s"], delay: %s, chunk: word}
    routes:
      - llm: {}
    """


@pytest.fixture(scope="module")
def hup_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """`python app.py` with one worker over a folder of one slow scripted-model bot."""
    folder = tmp_path_factory.mktemp("hup") / "bots"
    folder.mkdir()
    write(folder / "slow.yaml", SLOW % ("old one two three four five", "0.25"))
    server = Server(folder.parent / "server.log", workers=1, BOTS_DIR=str(folder))
    yield server, folder
    server.stop()


def answer_of(server: Server, bot: str) -> str:
    status, body = server.post(f"/{bot}", query(user("hi")))
    assert status == 200, body
    return "".join(
        json.loads(line[len("data: ") :]).get("text", "")
        for line in body.decode().splitlines()
        if line.startswith("data: {") and '"text"' in line
    )


def test_sighup_during_an_open_answer_lets_it_finish_and_serves_the_new_bot(
    hup_server: tuple[Server, Path],
) -> None:
    server, folder = hup_server
    old_workers = server.worker_pids()
    connection = server.connect()
    connection.request("POST", "/slow", json.dumps(query(user("hi"))), server.headers())
    response = connection.getresponse()
    assert response.status == 200
    first = response.read1()
    assert b"event: meta" in first or b"old" in first  # the answer has begun
    write(folder / "slow.yaml", SLOW % ("new answer", "0"))
    mark = server.mark()
    os.kill(server.process.pid, signal.SIGHUP)
    rest = response.read()  # the old worker finishes the answer it began
    connection.close()
    streamed = (first + rest).decode()
    assert "event: done" in streamed and "event: error" not in streamed
    assert "five" in streamed
    wait_for(lambda: answer_of(server, "slow") == "new answer", "the new version", 10)
    wait_for(lambda: not server.worker_pids() & old_workers, "the old worker to exit", 10)
    assert f"reloaded {folder / 'slow.yaml'}" in server.log_since(mark)


def test_sighup_after_a_broken_edit_keeps_the_last_good_version_and_logs_why(
    hup_server: tuple[Server, Path],
) -> None:
    server, folder = hup_server
    write(folder / "slow.yaml", SLOW % ("good again", "0"))
    os.kill(server.process.pid, signal.SIGHUP)
    wait_for(lambda: answer_of(server, "slow") == "good again", "the good version", 10)
    mark = server.mark()
    write(folder / "slow.yaml", BROKEN)
    os.kill(server.process.pid, signal.SIGHUP)
    expected = f"{folder / 'slow.yaml'}: 1 error; its last good version keeps answering"
    error_line = f"{folder / 'slow.yaml'}:2:"

    def logged_why() -> bool:  # the summary, then the error line (a write of its own)
        _, found, after = server.log_since(mark).partition(expected)
        return bool(found) and error_line in after

    wait_for(logged_why, "the summary and the error line in the log", 10)
    time.sleep(0.5)  # new workers forked
    assert answer_of(server, "slow") == "good again"


# --- the development server's watcher -------------------------------------------------

WATCH = """\
from gevent import monkey; monkey.patch_all()
import logging
from engine.server import Server
from engine.settings import Settings
from engine.spec.routes import ReplyRoute
from engine.web import create_app
settings = Settings()
logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
Server(create_app(settings=settings, keep_going=True), settings, watch=True).run()
"""


class Watching:
    """A server in watch mode (as `python -m engine play` runs it), one worker."""

    def __init__(self, folder: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.endswith("ACCESS_KEY")}
        env |= {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "BOTS_DIR": str(folder),
            "WEB_CONCURRENCY": "1",
            "STATE_DIR": str(folder.parent / "state"),
            "PYTHONUNBUFFERED": "1",
        }
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCH],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "watching" in self.log(), "the watcher to start", 20)

    def log(self) -> str:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited:\n{self.log_path.read_text()}")
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ask(self, bot: str) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            body = json.dumps(query(user("hi")))
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            connection.request("POST", f"/{bot}", body, headers)
            response = connection.getresponse()
            data = response.read()
        except OSError:
            return "unreachable"
        finally:
            connection.close()
        if response.status != 200:
            return str(response.status)
        return "".join(m["text"] for m in json.loads(data)["messages"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def watching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Watching, Path]]:
    folder = tmp_path_factory.mktemp("watch") / "bots"
    folder.mkdir()
    write(folder / "a.yaml", rule_bot("A one"))
    write(folder / "b.yaml", rule_bot("B one"))
    server = Watching(folder, folder.parent / "server.log")
    yield server, folder
    server.stop()


def seen_within(server: Watching, bot: str, expected: str, seconds: float = 10.0) -> None:
    """Waits until the bot answers `expected`. The bound is generous: these tests prove that
    a save reloads the bot, on a loaded machine too; bench/reload.py measures how fast."""
    wait_for(lambda: server.ask(bot) == expected, f"{bot} to answer {expected!r}", seconds)


def test_watch_mode_serves_a_good_edit(
    watching: tuple[Watching, Path],
) -> None:
    server, folder = watching
    assert "watching" in server.log() and "for changes" in server.log()
    write(folder / "a.yaml", rule_bot("A two"))
    seen_within(server, "a", "A two")


def test_watch_mode_keeps_the_last_good_version_of_a_broken_edit(
    watching: tuple[Watching, Path],
) -> None:
    server, folder = watching
    write(folder / "b.yaml", rule_bot("B two"))
    seen_within(server, "b", "B two")
    write(folder / "b.yaml", BROKEN)
    expected = f"{folder / 'b.yaml'}: 1 error; its last good version keeps answering"
    wait_for(lambda: expected in server.log(), "the broken edit in the log", 10)
    time.sleep(0.3)
    assert server.ask("b") == "B two"


def test_watch_mode_adds_a_new_file_and_drops_a_deleted_one(
    watching: tuple[Watching, Path],
) -> None:
    server, folder = watching
    write(folder / "c.yaml", rule_bot("C one"))
    seen_within(server, "c", "C one")
    (folder / "c.yaml").unlink()
    seen_within(server, "c", "404")
