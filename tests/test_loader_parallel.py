"""A bots folder loaded by several processes gives the same report, and working bots."""

from __future__ import annotations

import logging
import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.loader import LoadReport, load_paths
from engine.loader.parallel import default_jobs, fork_map
from engine.testing import run_bot_tests

from .conftest import BOTS_DIR, EXAMPLE_BOTS, EXAMPLE_ENV, run_python

EXTRA_FILES = {
    # Adjacent in name order, so two different processes load them.
    "dup-a.yaml": "name: twin\nroutes:\n  - reply: a\n",
    "dup-b.yaml": "name: twin\nroutes:\n  - reply: b\n",
    "broken.yaml": "routes:\n  - reply: '{{ mesage }}'\n    sugest: [x]\n",
    "no-fallback.yaml": "routes:\n  - if: \"message == 'x'\"\n    reply: x\n",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example bots, plus errors, a warning, a duplicate name and an unreadable file."""
    target = tmp_path_factory.mktemp("parallel")
    for path in BOTS_DIR.glob("*.yaml"):
        shutil.copy(path, target / path.name)
    for name, text in EXTRA_FILES.items():
        (target / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (target / "latin1.yaml").write_bytes(b"greeting: caf\xe9\n")
    return target


def _summary(report: LoadReport) -> tuple[int, list[str], list[tuple[str, str]]]:
    bots = [(name, bot.file) for name, bot in report.bots.items()]
    return report.files, [str(problem) for problem in report.problems], bots


@pytest.fixture(scope="module")
def in_one_process(folder: Path) -> LoadReport:
    return load_paths([folder], EXAMPLE_ENV, jobs=1)


@pytest.mark.parametrize("jobs", [2, 3])
def test_the_report_is_the_same_whatever_the_number_of_processes(
    folder: Path, in_one_process: LoadReport, jobs: int
) -> None:
    summary = _summary(in_one_process)
    assert summary[0] == len(EXAMPLE_BOTS) + 5
    assert any("bot name 'twin' is already used by" in text for text in summary[1])
    assert any("cannot read the file" in text for text in summary[1])
    assert any("unknown variable 'mesage'" in text for text in summary[1])
    assert any("no fallback route" in text for text in summary[1])
    assert _summary(load_paths([folder], EXAMPLE_ENV, jobs=jobs)) == summary


def test_bots_loaded_by_other_processes_pass_their_own_tests(folder: Path) -> None:
    report = load_paths([folder], EXAMPLE_ENV, jobs=2)
    tested = [bot for bot in report.bots.values() if bot.spec.tests]
    assert len(tested) == len(EXAMPLE_BOTS)  # half of them loaded by the other process
    for bot in tested:
        failures = [(r.name, r.failures) for r in run_bot_tests(bot) if not r.passed]
        assert failures == [], bot.name


def test_fork_map_keeps_the_order_and_uses_other_processes() -> None:
    items = list(range(23))
    assert fork_map(lambda item: item * item, items, 3) == [item * item for item in items]
    pids = fork_map(lambda _: os.getpid(), items, 3)
    assert pids[0] == os.getpid()
    assert len(set(pids)) == 3
    assert fork_map(lambda item: item, [1], 4) == [1]
    assert fork_map(lambda item: item, [], 4) == []


def test_a_failing_process_costs_only_the_speed_up(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Results that cannot be pickled back: the parent loads that share itself."""
    items = list(range(6))
    with caplog.at_level(logging.WARNING, logger="engine.loader"):
        results = fork_map(_unpicklable, items, 2)
    assert [result() for result in results] == items
    assert "a loading process failed (exit code 1); loading its 3 files here instead" in (
        caplog.text
    )
    assert "pickle" in capfd.readouterr().err.lower()  # the child's traceback


def _unpicklable(item: int) -> Callable[[], int]:
    return lambda: item


def test_without_processes_to_spare_the_parent_does_the_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with caplog.at_level(logging.WARNING, logger="engine.loader"):
        assert fork_map(lambda item: -item, [1, 2, 3, 4], 2) == [-1, -2, -3, -4]
    assert "cannot start a loading process ([Errno 11] Resource temporarily unavailable)" in (
        caplog.text
    )


def test_children_are_reaped_when_the_parent_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    forked: list[int] = []
    real_fork = os.fork

    def recording_fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording_fork)

    def fail_here(item: int) -> int:
        if item == 0:  # the parent's first item
            raise ValueError("broken")
        return item

    with pytest.raises(ValueError, match="broken"):
        fork_map(fail_here, list(range(8)), 3)
    assert len(forked) == 2
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import gevent, os
gevent.sleep(0)  # a hub exists: gevent's own close of a pipe would now wait for its loop
from engine.loader.parallel import fork_map
print(len(set(fork_map(lambda _: os.getpid(), range(6), 3))))
"""


def test_a_gevent_patched_process_gets_its_results() -> None:
    """As in `python app.py`'s master; with gevent's close the read never ended."""
    completed = run_python(GEVENT_SCRIPT, timeout=30)
    assert (completed.returncode, completed.stdout) == (0, "3\n"), completed.stderr


def test_default_jobs_grow_with_the_folder_up_to_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_jobs(6) == 1
    assert default_jobs(20) == min(2, cores)
    assert default_jobs(100_000) == cores
