"""Canvas apps in the playground: each HTML page of the canvas folder (and each YAML canvas
app, built on the fly) served at /play/canvas/<name> with a stand-in for Poe's window.Poe.

The page around the app (play/canvas.html) holds the emulator's panel and loads the app in
an iframe sandboxed as Poe's canvas frame is (scripts and forms, no same origin): storage,
modals and the playground's own API fail there as they would in Poe, and the panel never
touches the app's layout. The app's HTML gets static/poe-embed.js as the first script of
its head; it steps aside when a real window.Poe exists. The script is written into the page
rather than linked: a sandboxed frame's requests come from an opaque origin, which gets no
SameSite=Strict cookie, so with PLAYGROUND_TOKEN set a linked script would be refused.

A child of the playground's blueprint, so its guard (loopback Host, token) covers these
pages too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, render_template
from markupsafe import escape

if TYPE_CHECKING:
    from . import EngineState

blueprint = Blueprint("canvas", __name__)

FOLDER_KEY = "canvas.folder"
EMBED_SCRIPT = Path(__file__).parent / "static" / "poe-embed.js"
HTML_SUFFIXES = (".html", ".htm")
YAML_SUFFIXES = (".yaml", ".yml")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEAD = re.compile(r"<head(?=[\s>/])[^>]*>", re.IGNORECASE)
_HTML = re.compile(r"<html(?=[\s>/])[^>]*>", re.IGNORECASE)
_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class CanvasApp:
    """One app of the folder: `problems` as `validate` prints them (a YAML file's)."""

    name: str
    path: Path
    kind: str  # "html" | "yaml"
    title: str | None
    problems: tuple[str, ...] = ()

    def listed(self) -> dict[str, object]:
        return {
            "name": self.name,
            "file": self.path.name,
            "kind": self.kind,
            "title": self.title,
            "problems": list(self.problems),
        }


def use_folder(app: Flask, folder: Path | None) -> None:
    """`engine play --canvas DIR`; without it, `canvas` beside the bots folder."""
    app.extensions[FOLDER_KEY] = folder


def folder() -> Path | None:
    """The canvas folder, when there is one."""
    chosen = current_app.extensions.get(FOLDER_KEY)
    if chosen is None:
        chosen = _engine().settings.bots_dir.parent / "canvas"
    path = Path(chosen)
    return path if path.is_dir() else None


def _engine() -> EngineState:
    state: EngineState = current_app.extensions["engine"]
    return state


# ---------------------------------------------------------------------------- the folder


def apps() -> dict[str, CanvasApp]:
    """Every app by name (its file's stem); an HTML page wins a name over a YAML file."""
    found: dict[str, CanvasApp] = {}
    where = folder()
    if where is None:
        return found
    files = sorted(p for p in where.iterdir() if p.is_file() and NAME.match(p.stem))
    for path in sorted(files, key=lambda p: p.suffix.lower() not in HTML_SUFFIXES):
        suffix = path.suffix.lower()
        if path.stem in found or suffix not in HTML_SUFFIXES + YAML_SUFFIXES:
            continue
        if suffix in HTML_SUFFIXES:
            found[path.stem] = CanvasApp(path.stem, path, "html", _html_title(path))
        else:
            found[path.stem] = _yaml_app(path)
    return dict(sorted(found.items()))


def _html_title(path: Path) -> str | None:
    match = _TITLE.search(_read(path)[:20_000])
    if match is None:
        return None
    return " ".join(match.group(1).split()) or None


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _yaml_app(path: Path) -> CanvasApp:
    """A YAML canvas app as listed: its title, or the problems that keep it from building."""
    from ..canvas.loader import load_canvas_file  # the YAML canvas compiler, only when asked

    compiled, problems = load_canvas_file(path, _bot_names())
    title = compiled.spec.title if compiled is not None else None
    errors = tuple(str(p) for p in problems if compiled is None or not p.is_warning)
    return CanvasApp(path.stem, path, "yaml", title, errors)


def _bot_names() -> set[str]:
    return {name.lower() for name in _engine().bots}


def page_html(app: CanvasApp) -> str:
    """The app's HTML as served: a YAML app built now, then the emulator put in."""
    if app.kind == "yaml":
        from ..canvas.build import build_html
        from ..canvas.loader import load_canvas_file

        compiled, _ = load_canvas_file(app.path, _bot_names())
        if compiled is None:
            raise LookupError(app.name)
        return inject(build_html(compiled))
    return inject(_read(app.path))


def inject(html: str, script: str | None = None) -> str:
    """`html` with the emulator's script first in its head (an implied head: after <html>,
    else after the doctype, else at the very start)."""
    code = EMBED_SCRIPT.read_text(encoding="utf-8") if script is None else script
    safe = code.replace("</", "<\\/")  # nothing in it may close the script element
    tag = f"<script data-poe-embed>\n{safe}</script>"
    for pattern in (_HEAD, _HTML, _DOCTYPE):
        match = pattern.search(html)
        if match:
            return f"{html[: match.end()]}{tag}{html[match.end() :]}"
    return tag + html


# ---------------------------------------------------------------------------- routes


@blueprint.get("/api/canvas")
def listing() -> dict[str, object]:
    where = folder()
    return {
        "folder": None if where is None else str(where),
        "apps": [app.listed() for app in apps().values()],
    }


@blueprint.get("/canvas/<name>")
def shell(name: str) -> tuple[str, int]:
    app = apps().get(name)
    if app is None or app.problems:
        return _missing(name, app), 404
    return render_template("play/canvas.html", name=name, title=app.title), 200


@blueprint.get("/canvas/<name>/app")
def app_page(name: str) -> Response | tuple[str, int]:
    app = apps().get(name)
    if app is None or app.problems:
        return _missing(name, app), 404
    try:
        html = page_html(app)
    except LookupError:
        return _missing(name, app), 404
    headers = {"Cache-Control": "no-store"}
    return Response(html, 200, headers, mimetype="text/html")


def _missing(name: str, app: CanvasApp | None) -> str:
    """A page saying why there is no app to show."""
    if app is None:
        reason = "No canvas app has that name: it is an .html or .yaml file in the canvas folder."
    else:
        reason = "Its file has errors:\n" + "\n".join(app.problems)
    return (
        f"<!doctype html><title>{escape(name)}</title><h1>{escape(name)}</h1>"
        f'<pre>{escape(reason)}</pre><p><a href="/play/">Every bot and canvas app</a>'
    )
