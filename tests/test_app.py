"""`python app.py` refuses to start, with a clear reason, when it must not serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.settings import Settings

from .conftest import EXAMPLE_ENV, REPO, run_python


def _start(env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_ACCESS_KEY")}
    return subprocess.run(
        [sys.executable, str(REPO / "app.py")],
        cwd=cwd,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_refuses_keyless_bots_off_loopback() -> None:
    keys = {name: value for name, value in EXAMPLE_ENV.items() if name.endswith("_ACCESS_KEY")}
    unset = {"HELLO_ACCESS_KEY", "ACME_HELP_ACCESS_KEY"}
    env = {name: value for name, value in keys.items() if name not in unset}
    result = _start({"HOST": "0.0.0.0", "PORT": "1", **env})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "refusing to serve acme-help, hello on 0.0.0.0 without an access key; "
        "export ACME_HELP_ACCESS_KEY; export HELLO_ACCESS_KEY (or bind HOST=127.0.0.1)"
    )


def test_refuses_broken_bots_and_lists_every_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("routes:\n  - reply: '{{ mesage }}'\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("greting: hi\nroutes: [{reply: ok}]\n", encoding="utf-8")
    result = _start({"BOTS_DIR": str(tmp_path), "PORT": "1"})
    assert result.returncode == 1
    assert f"{tmp_path}/a.yaml:2:16: routes[0].reply: unknown variable 'mesage'" in result.stderr
    assert f"{tmp_path}/b.yaml:1:1: greting: unknown key 'greting'" in result.stderr


def test_refuses_hostile_yaml_with_located_errors_not_a_traceback(tmp_path: Path) -> None:
    # Each of these raised out of the loader, crashed it or ran without end (issue 7.6).
    laughs = ["l0: &l0 [a, a, a, a, a, a, a, a, a]"]
    laughs += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)]
    files = {
        "alias.yaml": "routes: &r [*r]\n",
        "bomb.yaml": "\n".join(laughs) + "\n",
        "deep.yaml": "routes: " + "[" * 30_000 + "\n",
        "tag.yaml": "name: !!int abc\nroutes: [{reply: hi}]\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = _start({"BOTS_DIR": str(tmp_path), "PORT": "1", "LOAD_JOBS": "2"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "not starting:",
        f"{tmp_path}/alias.yaml:1:13: routes[0]: the alias *r is inside the value anchored as "
        "&r, so it never ends (an alias repeats a value that ends before it; &r is on line 1)",
        f"{tmp_path}/bomb.yaml:6:10: l5[0]: the file has more than 100,000 values, counting "
        "each one an alias repeats (an alias repeats all its anchor holds, so aliases of "
        "aliases multiply)",
        f"{tmp_path}/deep.yaml:1:108: nesting is deeper than 100 levels (a bot needs a few; "
        "look for brackets that are never closed)",
        f"{tmp_path}/tag.yaml:1:7: name: cannot read !!int 'abc' as an integer (remove the tag "
        "!!int, or quote the value to keep it as text)",
    ]


def test_refuses_invalid_settings_naming_the_variable() -> None:
    result = _start({"PORT": "eighty", "LOG_LEVEL": "loud"})
    assert result.returncode == 1
    assert "PORT: got 'eighty'" in result.stderr
    assert "LOG_LEVEL: got 'loud'; input should be 'debug', 'info', 'warning' or 'error'" in (
        result.stderr
    )


def _imported_after_start(tmp_path: Path, bot: str) -> set[str]:
    (tmp_path / "bot.yaml").write_text(bot, encoding="utf-8")
    probe = (
        "import sys; from engine.web import create_app; create_app(sys.argv[1], env={}); "
        "print(' '.join(m for m in ('openai', 'anthropic', 'httpx') if m in sys.modules))"
    )
    result = run_python(probe, str(tmp_path))
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_sdks_of_the_models_in_use_are_imported_at_start(tmp_path: Path) -> None:
    # Importing an SDK takes up to a second: on first use it would stall a gevent worker.
    bot = "model: {provider: openai, name: m, base_url: 'http://127.0.0.1:9/v1'}\n"
    assert "openai" in _imported_after_start(tmp_path, bot + "routes: [{llm: {}}]\n")


def test_sdks_no_bot_uses_are_not_imported(tmp_path: Path) -> None:
    assert _imported_after_start(tmp_path, "routes: [{reply: hi}]\n").isdisjoint(
        {"openai", "anthropic"}
    )


def test_reads_dotenv_in_the_current_folder_where_set_variables_win(tmp_path: Path) -> None:
    (tmp_path / "bots").mkdir()
    for name in ("kept", "unkeyed"):
        bot = f"access_key: ${{{name.upper()}_ACCESS_KEY}}\nroutes: [{{reply: hi}}]\n"
        (tmp_path / "bots" / f"{name}.yaml").write_text(bot, encoding="utf-8")
    # Were .env to win, PORT=eighty would refuse to start; were it not read, both bots.
    dotenv = f"HOST=127.0.0.1\nPORT=eighty\nKEPT_ACCESS_KEY={'K' * 32}\nnot an assignment\n"
    (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    result = _start({"HOST": "0.0.0.0", "PORT": "1"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "INFO engine: read 1 variable from .env (2 variables already set in the " in (
        result.stderr
    )
    assert "WARNING engine: .env:4: cannot read this line, skipped" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "refusing to serve unkeyed on 0.0.0.0 without an access key; "
        "export UNKEYED_ACCESS_KEY (or bind HOST=127.0.0.1)"
    )


def _app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "app.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_help_lists_every_setting_and_starts_nothing() -> None:
    result = _app("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: python app.py [-h]\n")
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines if line[:2] == "  " and line[2] != " "}
    for name, field in Settings.model_fields.items():
        assert name.upper() in rows, f"{name.upper()} missing from --help"
        assert str(field.description).split()[0] in rows[name.upper()]
    assert rows["PORT"].split()[:2] == ["PORT", "8080"]
    assert rows["WEB_CONCURRENCY"].split()[:2] == ["WEB_CONCURRENCY", "2"]
    assert "OPENAI_API_KEY" in result.stdout and ".env" in result.stdout


def test_an_argument_is_refused_with_a_pointer_to_the_settings() -> None:
    result = _app("--port", "9000")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "python app.py: error: unrecognized arguments: --port 9000 (settings come from the "
        "environment, as in PORT=8000 python app.py; see --help)"
    )
