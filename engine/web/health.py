"""`GET /` lists the bots; `GET /healthz` answers load balancers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

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
