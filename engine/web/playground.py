"""The browser playground at /play/: pages, a JSON API over the bots, and turns proxied to
each bot over HTTP with the protocol checked on the way (play_bots, play_turn, play_files).

Served only when `Settings.playground` is on (`python -m engine play`, or PLAYGROUND=true).
It holds every bot's key server-side and talks to the bots with them, so every request is
checked first: the Host must name loopback (a DNS-rebinding page cannot reach it), a
state-changing request must be JSON or multipart from the page's own origin (CSRF), and
off loopback the browser must have shown PLAYGROUND_TOKEN once (an HttpOnly cookie).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
)
from jinja2 import TemplateNotFound
from markupsafe import escape

from . import canvas, play_bots, play_files, play_turn
from .play_bots import RemoteBot

if TYPE_CHECKING:
    from werkzeug.wrappers import Response as BaseResponse

    from . import EngineState

blueprint = Blueprint(
    "playground",
    __name__,
    url_prefix="/play",
    template_folder="templates",
    static_folder="static",
)
blueprint.register_blueprint(canvas.blueprint)  # /play/canvas/...: canvas apps, same guard

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
TOKEN_COOKIE = "playground_token"
NDJSON = "application/x-ndjson"


@dataclass
class Playground:
    """The playground's own state beside the engine's: the uploads folder (made in the
    gunicorn master) and the remote bots `engine play --connect` named."""

    files: Path
    remotes: dict[str, RemoteBot] = field(default_factory=dict)


def install(app: Flask) -> None:
    """Serve the playground from `app` (create_app has refused it off loopback without
    PLAYGROUND_TOKEN)."""
    app.extensions["playground"] = Playground(files=play_files.make_folder())
    app.register_blueprint(blueprint)
    app.before_request(_browser_home)


def connect(app: Flask, remotes: Mapping[str, str]) -> None:
    """Add remote bots, {name: url}, each read with the key in PLAY_<NAME>_ACCESS_KEY."""
    playground: Playground = app.extensions["playground"]
    for name, url in remotes.items():
        playground.remotes[name] = RemoteBot(name, url, play_bots.remote_key_variable(name))


def _engine(app: Flask | None = None) -> EngineState:
    state: EngineState = (app or current_app).extensions["engine"]
    return state


def _playground() -> Playground:
    playground: Playground = current_app.extensions["playground"]
    return playground


def _browser_home() -> BaseResponse | None:
    """A browser opening `/` lands on the playground; other clients keep the JSON index."""
    # Only a browser names text/html; curl and scripts (`*/*`) keep getting the JSON.
    if request.path == "/" and request.method == "GET" and "text/html" in _accepted():
        return redirect("/play/")
    return None


def _accepted() -> str:
    return request.headers.get("Accept", "")


# ---------------------------------------------------------------------------- security


@blueprint.before_request
def _guard() -> BaseResponse | tuple[dict[str, str], int] | None:
    settings = _engine().settings
    token = settings.playground_token
    if token is None and _host_name(request.host) not in LOOPBACK_NAMES:
        return {
            "error": f"the playground answers only at 127.0.0.1 or localhost, not {request.host}"
        }, 403
    if token is not None:
        secret = token.get_secret_value()
        given = request.args.get("token")
        if request.path == "/play/" and given is not None and _same(given, secret):
            return _token_accepted(secret)
        if not request.path.startswith("/play/files/") and not _same(
            request.cookies.get(TOKEN_COOKIE, ""), secret
        ):
            return {"error": "open /play/?token=<PLAYGROUND_TOKEN> first"}, 403
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    return _check_post()


def _check_post() -> tuple[dict[str, str], int] | None:
    """A page elsewhere may POST here from the user's browser: only our own page's
    JSON or multipart requests pass (a form or `no-cors` fetch can send neither JSON nor,
    with an Origin, our origin)."""
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    if origin is not None and origin != own:
        return {"error": f"cross-origin request from {origin} refused"}, 403
    if request.mimetype not in ("application/json", "multipart/form-data"):
        return {"error": "send application/json (or multipart/form-data for a file)"}, 415
    return None


def _host_name(host: str) -> str:
    """`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:8080` -> `[::1]`."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rpartition(":")[0] if ":" in host else host


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode(), secret.encode())


def _token_accepted(secret: str) -> BaseResponse:
    """The token, shown once in the URL, becomes a cookie; the URL drops it."""
    response = redirect("/play/")
    response.set_cookie(TOKEN_COOKIE, secret, httponly=True, samesite="Strict", path="/")
    return response


# ---------------------------------------------------------------------------- pages


@blueprint.get("/")
def index() -> str:
    return _page("play/index.html")


@blueprint.get("/bots/<name>")
def bot_page(name: str) -> str:
    return _page("play/bot.html", name=name)


def _page(template: str, **context: Any) -> str:
    try:
        return render_template(template, **context)
    except TemplateNotFound:  # the pages come with the frontend; the API works without
        title = escape(context.get("name", "Playground"))
        return f"<!doctype html><title>{title}</title><p>The playground API is at /play/api/."


# ---------------------------------------------------------------------------- API


@blueprint.get("/api/version")
def version() -> dict[str, Any]:
    return {"version": _engine().version}


@blueprint.get("/api/bots")
def bots() -> dict[str, Any]:
    state = _engine()
    return {"version": state.version, "bots": play_bots.listed(state, _playground().remotes)}


@blueprint.get("/api/bots/<name>")
def bot(name: str) -> tuple[dict[str, Any], int]:
    found = play_bots.detail(name, _engine(), _playground().remotes)
    if found is None:
        return {"error": f"no bot named {name!r}"}, 404
    return found, 200


@blueprint.post("/api/bots/<name>/turn")
def turn(name: str) -> Response | tuple[dict[str, str], int]:
    if request.mimetype != "application/json":
        return {"error": "send the turn as application/json"}, 415
    target = _target(name)
    if target is None:
        return {"error": f"no bot named {name!r}"}, 404
    try:
        body = play_turn.query_request(request.get_json(silent=True))
    except play_turn.TurnError as exc:
        return {"error": str(exc)}, 400
    lines = play_turn.stream(target, body, body["conversation_id"])
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(lines, 200, headers, mimetype=NDJSON)


def _target(name: str) -> play_turn.Target | None:
    state = _engine()
    bot = state.bots.get(name)
    if bot is not None:
        return play_turn.Target(_own_url(name), bot.access_key, state.trace_token, bot)
    remote = _playground().remotes.get(name)
    return None if remote is None else play_turn.Target(remote.url, remote.key)


def _own_url(name: str) -> str:
    """This server's endpoint for the bot, at the address and port the request came in on
    (any address reaches a server bound to all of them through loopback)."""
    host = request.environ.get("SERVER_NAME", "127.0.0.1")
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{request.environ.get('SERVER_PORT', '80')}/{name}"


@blueprint.post("/api/files")
def upload() -> tuple[dict[str, Any], int]:
    if request.mimetype != "multipart/form-data":
        return {"error": "send the file as multipart/form-data, field `file`"}, 415
    limit = play_files.MAX_UPLOAD_BYTES
    if (request.content_length or 0) > limit + 64 * 1024:  # the form's own bytes besides
        return {"error": f"the file is over {limit // (1024 * 1024)} MB"}, 413
    request.max_content_length = limit + 64 * 1024
    upload = request.files.get("file")
    if upload is None:
        return {"error": "no file in the form's `file` field"}, 400
    try:
        return play_files.store(_playground().files, upload, request.host_url), 200
    except play_files.TooLarge as exc:
        return {"error": str(exc)}, 413


@blueprint.get("/files/<file_id>/<name>")
def uploaded(file_id: str, name: str) -> Response | tuple[dict[str, str], int]:
    if not play_files.FILE_ID.match(file_id):
        return {"error": "no such file"}, 404
    return send_from_directory(_playground().files / file_id, name)
