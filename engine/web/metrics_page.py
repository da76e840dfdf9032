"""`GET /metrics`: the Prometheus text of every worker's counts (engine/metrics.py).

Open on loopback, where only this machine can ask. Elsewhere it needs METRICS_TOKEN, sent
as `Authorization: Bearer <token>`, as Prometheus' `authorization` scrape setting sends it;
without one it answers 403, so a server on 0.0.0.0 does not tell the world its bots'
traffic. A request that came through a proxy or tunnel counts as from elsewhere.
"""

from __future__ import annotations

import hmac
import json
import logging

from flask import Blueprint, Flask, Response, current_app, request

from ..metrics import render
from ..settings import Settings
from .poe import JSON

log = logging.getLogger("engine.web")
blueprint = Blueprint("metrics", __name__)

NEEDS_TOKEN = (
    "/metrics answers off loopback only with METRICS_TOKEN set: scrape it with "
    "'Authorization: Bearer <METRICS_TOKEN>'"
)
WRONG_TOKEN = "missing or wrong metrics token (send 'Authorization: Bearer <METRICS_TOKEN>')"
_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def install(app: Flask, settings: Settings) -> None:
    app.register_blueprint(blueprint)
    if settings.metrics_token is None and not settings.is_loopback:
        log.warning("%s; until it is, /metrics answers 403", NEEDS_TOKEN)


@blueprint.get("/metrics")
def scrape() -> Response:
    settings: Settings = current_app.extensions["engine"].settings
    token = settings.metrics_token
    if token is not None:
        if not _bearer(token.get_secret_value()):
            return _refused(401, WRONG_TOKEN, {"WWW-Authenticate": "Bearer"})
    elif not settings.is_loopback or any(header in request.headers for header in _PROXY_HEADERS):
        return _refused(403, NEEDS_TOKEN)
    body, content_type = render()
    return Response(body, content_type=content_type)


def _bearer(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    # Constant-time, so response timing reveals nothing about the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _refused(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"error": message}), status, headers, content_type=JSON)
