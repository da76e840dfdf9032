"""`GET /` lists the bots; `GET /healthz` answers load balancers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from .poe import error, unknown_bot

blueprint = Blueprint("health", __name__)


@blueprint.get("/")
def index() -> dict[str, Any]:
    bots = current_app.extensions["engine"].bots
    return {
        "bots": [
            {
                "name": name,
                "description": bot.spec.description,
                "url": request.host_url + name,
                "access_key": bot.access_key is not None,
            }
            for name, bot in sorted(bots.items())
        ]
    }


@blueprint.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"status": "ok", "bots": len(current_app.extensions["engine"].bots)}


@blueprint.get("/<bot_name>")
def describe(bot_name: str) -> Response:
    """A browser check that the URL is right; Poe itself only POSTs."""
    bots = current_app.extensions["engine"].bots
    reply = (
        unknown_bot(bot_name, bots)
        if bot_name not in bots
        else error(
            405, f"bot '{bot_name}' is running; Poe talks to it with POST", {"Allow": "POST"}
        )
    )
    return Response(reply.body, reply.status, reply.headers)
