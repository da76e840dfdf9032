"""The container recipe, as far as a machine without a Docker engine can test it.

Docker cannot build or run here, so the Dockerfile is read and its steps are replayed: its
`pip install` in a fresh virtual environment, its files copied as its COPY lines and
.dockerignore say, its CMD started with its ENV (as a non-root user when the tests run as
root), and its HEALTHCHECK command run against that server. compose.yaml and the nginx
configuration are checked for their structure; the nginx configuration also runs for real
in front of two engine processes sharing one redis-server, when nginx is installed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._poe import parse_sse, query, user
from ._redis import RedisServer, running_redis
from ._server import Server, free_port, wait_for
from .conftest import KEY, REPO

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
NGINX_CONF = REPO / "deploy" / "nginx.conf"
# The fresh environment is kept between runs while the install command and requirements are
# the same (a fresh install takes 15 to 45 s here: 147 MB of wheels, cached by pip or not).
# Outside the repository, where linters and type checkers never look.
VENV_CACHE = Path(tempfile.gettempdir()) / "engine-image-venv"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


# ---------------------------------------------------------------- reading the Dockerfile


@dataclass(frozen=True)
class Instruction:
    name: str  # upper case
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        name, _, args = pending.partition(" ")
        found.append(Instruction(name.upper(), args.strip()))
        pending = ""
    return found


def exec_form(args: str) -> list[str]:
    """A JSON-array command (CMD ["python", "app.py"]) or a shell one, as argv."""
    if args.startswith("["):
        command = json.loads(args)
        assert isinstance(command, list)
        return [str(part) for part in command]
    return ["/bin/sh", "-c", args]


def env_of(steps: list[Instruction]) -> dict[str, str]:
    """Every ENV of the image, in the KEY=VALUE form."""
    env: dict[str, str] = {}
    for step in steps:
        if step.name == "ENV":
            for pair in shlex.split(step.args):
                name, sep, value = pair.partition("=")
                assert sep, f"ENV {step.args}: write KEY=VALUE"
                env[name] = value
    return env


def healthcheck_command(steps: list[Instruction]) -> list[str]:
    (check,) = [step for step in steps if step.name == "HEALTHCHECK"]
    _, _, command = check.args.partition("CMD ")
    return exec_form(command.strip())


@pytest.fixture(scope="module")
def steps() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def test_the_image_is_slim_python_non_root_with_requirements_first(
    steps: list[Instruction],
) -> None:
    names = [step.name for step in steps]
    assert steps[0].name == "FROM" and re.fullmatch(r"python:3\.11-slim[\w.-]*", steps[0].args)
    runs = [step.args for step in steps if step.name == "RUN"]
    installs = [index for index, step in enumerate(steps) if "pip install" in step.args]
    assert len(installs) == 1
    install = steps[installs[0]]
    assert "-r requirements.txt" in install.args and "--only-binary=:all:" in install.args
    copies = [(index, step.args) for index, step in enumerate(steps) if step.name == "COPY"]
    # Layer caching: only requirements.txt is copied before the install.
    assert [args for index, args in copies if index < installs[0]] == ["requirements.txt ./"]
    user = [step.args for step in steps if step.name == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert names.index("USER") < names.index("CMD")
    assert any(f"useradd --system --uid {user[-1]}" in run or user[-1] in run for run in runs)
    assert exec_form([s for s in steps if s.name == "CMD"][-1].args) == ["python", "app.py"]
    assert env_of(steps)["HOST"] == "0.0.0.0"


def test_no_secret_in_the_image(steps: list[Instruction]) -> None:
    """No ENV or ARG names a key, token or secret; .env never reaches the build context."""
    for step in steps:
        if step.name in ("ENV", "ARG"):
            assert not SECRET_NAME.search(step.args), f"{step.name} {step.args}"
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored and ".git" in ignored and ".state" in ignored
    assert ignored_by(ignored, ".env") and ignored_by(ignored, ".env.production")
    assert not ignored_by(ignored, "engine/cli.py")


def test_the_healthcheck_asks_healthz_with_python(steps: list[Instruction]) -> None:
    command = healthcheck_command(steps)
    assert command == ["python", "-m", "engine.healthcheck"]
    source = (REPO / "engine" / "healthcheck.py").read_text(encoding="utf-8")
    assert "/healthz" in source


def ignored_by(patterns: list[str], path: str) -> bool:
    """.dockerignore's rule, for the patterns used here: the last match wins, `!` keeps."""
    ignored = False
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").removeprefix("**/")
        parts = Path(path).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))] + list(parts)
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not keep
    return ignored


# ---------------------------------------------------------------- replaying it


AS_NOBODY = os.geteuid() == 0  # as root, the server runs as nobody, as the image's user


def world_usable(path: Path) -> bool:
    """Whether any user may run `path`: every folder above it searchable by all."""
    path = path.resolve()
    return bool(path.stat().st_mode & stat.S_IXOTH) and all(
        folder.stat().st_mode & stat.S_IXOTH for folder in path.parents
    )


def base_python() -> str:
    """A Python 3.11 the image's user could run: ours, or else the system's (pyenv's lives
    in root's home, which nobody may enter)."""
    ours = Path(getattr(sys, "_base_executable", sys.executable))
    if not AS_NOBODY or world_usable(ours):
        return str(ours)
    system = shutil.which("python3.11", path="/usr/local/bin:/usr/bin")
    if system is None:
        pytest.skip("no Python 3.11 that a non-root user may run")
    return system


@pytest.fixture(scope="module")
def image_venv(steps: list[Instruction]) -> Path:
    """A virtual environment made only by the Dockerfile's `pip install`, cached by that
    command, requirements.txt and the Python it is made from."""
    (install,) = [step.args for step in steps if "pip install" in step.args]
    python = base_python()
    requirements = (REPO / "requirements.txt").read_bytes()
    key = f"{install}\0{python}\0".encode() + requirements
    digest = hashlib.sha256(key).hexdigest()[:16]
    venv = VENV_CACHE / digest
    if (venv / "ready").exists():
        return venv
    # Built aside and renamed when complete: test runs side by side in one work tree never
    # see, nor delete, one another's half-made environment.
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    VENV_CACHE.chmod(0o755)  # the server may run as nobody
    building = Path(tempfile.mkdtemp(prefix=f"{digest}-", dir=VENV_CACHE))
    subprocess.run([python, "-m", "venv", str(building)], check=True, timeout=120)
    argv = shlex.split(install)
    assert argv[:2] == ["pip", "install"], install
    # pip's cache changes where the wheels come from, not which: the suite reuses those the
    # project's own install downloaded (about 15 s instead of 45 s here).
    argv.remove("--no-cache-dir")
    started = time.monotonic()
    subprocess.run(
        [str(building / "bin" / "python"), "-m", *argv],
        cwd=REPO,
        check=True,
        timeout=600,
        capture_output=True,
    )
    (building / "ready").write_text(f"installed in {time.monotonic() - started:.1f} s\n")
    building.chmod(0o755)
    try:
        building.rename(venv)  # bin/python finds its packages relative to itself
    except OSError:  # another run finished first: use its environment
        shutil.rmtree(building, ignore_errors=True)
    for stale in VENV_CACHE.iterdir():  # environments of older requirements
        if len(stale.name) == len(digest) and stale.name != digest:
            shutil.rmtree(stale, ignore_errors=True)
    return venv


@pytest.fixture(scope="module")
def image_root(steps: list[Instruction]) -> Iterator[Path]:
    """The image's WORKDIR as its COPY lines fill it, without what .dockerignore leaves out,
    readable by everyone (the server may run as nobody)."""
    patterns = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    top = Path(tempfile.mkdtemp(prefix="engine-image-"))
    top.chmod(0o755)
    app = top / "app"
    app.mkdir(mode=0o755)
    for step in steps:
        if step.name != "COPY":
            continue
        *sources, target = shlex.split(step.args)
        for source in sources:
            origin = REPO / source.rstrip("/")
            destination = app / target if target.endswith("/") else app / target
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    app / target.rstrip("/"),
                    ignore=lambda folder, names: [
                        name
                        for name in names
                        if ignored_by(patterns, str(Path(folder, name).relative_to(REPO)))
                    ],
                    dirs_exist_ok=True,
                )
            else:
                destination = app / target / origin.name if target.endswith("/") else destination
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, destination)
    for path in [app, *app.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
    yield app
    shutil.rmtree(top, ignore_errors=True)


def test_the_install_gives_libyaml_and_needs_no_compiler(image_venv: Path) -> None:
    """--only-binary: every requirement has a wheel; PyYAML's carries libyaml."""
    result = subprocess.run(
        [str(image_venv / "bin" / "python"), "-c", "import yaml; print(yaml.__with_libyaml__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "True"


def test_the_image_command_serves_and_the_healthcheck_sees_it(
    steps: list[Instruction], image_venv: Path, image_root: Path, tmp_path: Path
) -> None:
    """`python app.py` as the image runs it: its ENV (HOST=0.0.0.0), keys given at run time,
    nothing of the test's environment, a writable STATE_DIR only, not root."""
    python_bin = str(image_venv / "bin")
    state = image_root.parent / "state"  # beside the app: a folder nobody can reach
    state.mkdir()
    if AS_NOBODY:
        os.chown(state, 65534, 65534)
    port = str(free_port())
    env = env_of(steps) | {
        "PATH": f"{python_bin}:/usr/bin:/bin",
        "HOME": str(state),
        "PORT": port,  # as `docker run -e PORT=...`; a free one here
        "STATE_DIR": str(state),  # the image's /var/lib/engine, owned by its user
        "WEB_CONCURRENCY": "1",
    }
    keys = re.findall(
        r"^access_key: \$\{(\w+)\}",
        "\n".join(path.read_text() for path in (image_root / "bots").glob("*.yaml")),
        re.MULTILINE,
    )
    env |= {name: KEY for name in keys} | {"ENGINE_STATE_SECRET": "s" * 40}
    run_as = {"user": 65534, "group": 65534} if AS_NOBODY else {}
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            exec_form([s for s in steps if s.name == "CMD"][-1].args),
            cwd=image_root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            **run_as,  # type: ignore[call-overload]
        )
        check = healthcheck_command(steps)

        def healthy() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"the server exited:\n{log.read_text()}")
            return (
                subprocess.run(check, cwd=image_root, env=env, capture_output=True).returncode == 0
            )

        try:
            wait_for(healthy, "the HEALTHCHECK command to pass", 30)
            text = log.read_text()
            assert "0.0.0.0" in text, text
            connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
            body = json.dumps(query(user("hi")))
            connection.request("POST", "/hello", body, {"Authorization": f"Bearer {KEY}"})
            answer = connection.getresponse()
            assert answer.status == 200
            assert ("text", {"text": "Hello! You said: hi"}) in parse_sse(answer.read())
            connection.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
    assert not any(image_root.rglob("__pycache__")), "the server wrote into its code folder"
    failed = subprocess.run(check, cwd=image_root, env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz did not answer")


# ---------------------------------------------------------------- compose and nginx


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.load(COMPOSE.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    assert isinstance(data, dict)
    return data


def test_compose_runs_two_replicas_behind_a_proxy_with_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"engine", "proxy", "redis"}
    engine, proxy, redis = services["engine"], services["proxy"], services["redis"]
    assert engine["build"] == "." and engine["deploy"]["replicas"] == 2
    assert engine["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert engine["environment"]["HOST"] == "0.0.0.0"
    assert engine["depends_on"]["redis"] == {"condition": "service_healthy"}
    # Sharing nothing but Redis: no volume, no published port (only the proxy's).
    assert "volumes" not in engine and "ports" not in engine
    assert proxy["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert proxy["ports"] == ["8080:8080"]
    assert redis["image"].startswith("redis:") and "ports" not in redis
    grace = int(str(engine["stop_grace_period"]).removesuffix("s"))
    assert grace > int(engine["environment"]["GRACEFUL_TIMEOUT"])


def test_compose_takes_secrets_from_the_env_file_only(compose: dict[str, Any]) -> None:
    engine = compose["services"]["engine"]
    assert engine["env_file"] == [{"path": ".env", "required": True}]
    for service in compose["services"].values():
        for name, value in (service.get("environment") or {}).items():
            assert not SECRET_NAME.search(name), f"{name} is set inline; put it in .env"
            assert "@" not in str(value), f"{name} holds credentials"
    text = COMPOSE.read_text(encoding="utf-8")
    assert KEY not in text and not re.search(r"\b[A-Za-z0-9]{32}\b", text)


def test_nginx_streams_and_keeps_upstream_connections() -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    assert re.search(r"^\s*proxy_buffering off;", conf, re.M)
    assert re.search(r"^\s*proxy_http_version 1\.1;", conf, re.M)
    assert re.search(r'^\s*proxy_set_header Connection "";', conf, re.M)
    assert re.search(r"^\s*keepalive \d+;", conf, re.M)
    read = re.search(r"^\s*proxy_read_timeout (\d+)s;", conf, re.M)
    assert read and int(read.group(1)) > 600  # Poe waits 600 s for an answer


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
STREAMING_BOT = """\
access_key: ${HELLO_ACCESS_KEY}
model: {provider: scripted, replies: ["one two three four five"], delay: 0.2}
limits: {messages: 3/minute}
routes:
  - llm: {}
"""


def local_nginx_conf(upstreams: list[int], listen: int, prefix: Path) -> str:
    """deploy/nginx.conf with loopback replicas in place of Docker's DNS name, inside the
    main configuration the nginx image provides."""
    conf = NGINX_CONF.read_text(encoding="utf-8")
    conf = re.sub(r"^resolver .*$", "", conf, flags=re.M)
    servers = "\n".join(f"    server 127.0.0.1:{port};" for port in upstreams)
    conf, count = re.subn(r"^\s*server engine:8080 resolve;$", servers, conf, flags=re.M)
    assert count == 1
    conf, count = re.subn(
        r"^(\s*)listen 8080;$", rf"\1listen 127.0.0.1:{listen};", conf, flags=re.M
    )
    assert count == 1
    (prefix / "default.conf").write_text(conf)
    return f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/default.conf;
}}
"""


@pytest.mark.skipif(NGINX is None and not os.environ.get("CI"), reason="nginx is not installed")
def test_two_replicas_behind_the_real_nginx_share_limits_and_stream(tmp_path: Path) -> None:
    assert NGINX is not None, "nginx is not installed (apt-get install -y nginx-light)"
    bots = tmp_path / "bots"
    bots.mkdir()
    (bots / "stream.yaml").write_text(STREAMING_BOT)
    redis_runs = running_redis(tmp_path)
    redis: RedisServer = next(redis_runs)
    replicas: list[Server] = []
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for index in range(2):
            replicas.append(
                Server(
                    tmp_path / f"replica{index}.log",
                    workers=1,
                    BOTS_DIR=str(bots),
                    REDIS_URL=redis.url,
                )
            )
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(local_nginx_conf([r.port for r in replicas], port, tmp_path))
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)])
        wait_for(lambda: _status(port, "/healthz") == 200, "nginx to answer /healthz", 10)
        assert _status(port, "/metrics") == 404

        # A turn through the proxy streams: the first words arrive long before `done`. (The
        # engine also sends X-Accel-Buffering: no, so nginx streams even without
        # `proxy_buffering off`; that line is for proxies and configs that drop the header.)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps(query(user("go")))
        started = time.monotonic()
        connection.request("POST", "/stream", body, {"Authorization": f"Bearer {KEY}"})
        response = connection.getresponse()
        assert response.status == 200
        first_text = done = None
        raw = b""
        while chunk := response.read1(65536):
            raw += chunk
            if first_text is None and b"event: text" in raw:
                first_text = time.monotonic() - started
        done = time.monotonic() - started
        connection.close()
        assert first_text is not None and done - first_text > 0.5, (first_text, done)
        assert "".join(d["text"] for n, d in parse_sse(raw) if n == "text") == (
            "one two three four five"
        )

        # Two more turns, one per replica (nginx takes them in turn): 3 in all is the limit;
        # the fourth is refused whichever replica gets it, as both count in Redis.
        marks = [replica.mark() for replica in replicas]
        outcomes = [_turn(port) for _ in range(3)]
        assert outcomes[:2] == [True, True] and outcomes[2] is False
        served = [
            bool(re.search(r"bot stream: query", r.log_since(m)))
            for r, m in zip(replicas, marks, strict=True)
        ]
        assert served == [True, True], "nginx did not spread the turns over both replicas"
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for replica in replicas:
            replica.stop()
        next(redis_runs, None)


def _status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def _turn(port: int) -> bool:
    """True when the turn was answered, False when a limit refused it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST", "/stream", json.dumps(query(user("go"))), {"Authorization": f"Bearer {KEY}"}
    )
    events = parse_sse(connection.getresponse().read())
    connection.close()
    return not any(name == "error" for name, _ in events)
