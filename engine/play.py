"""`python -m engine play`: the development server with the browser playground.

One gunicorn worker (so every reload lands in one process and the playground's view of
the bots is the one answering), the bot folder watched, broken files listed rather than
fatal. __main__ has monkey-patched gevent before anything imported ssl or socket.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from .errors import EngineError
from .logs import configure as configure_logs
from .settings import Settings, describe_invalid

log = logging.getLogger("engine")


def serve_playground(
    folder: Path,
    host: str,
    port: int,
    remotes: Mapping[str, str],
    canvas: Path | None = None,
) -> int:
    """Serve until stopped; 1 (with the reason on stderr) when it cannot start. `canvas`:
    the canvas apps' folder, default `canvas` beside `folder`."""
    from .server import Server
    from .web import canvas as canvas_apps
    from .web import create_app
    from .web.playground import connect

    try:
        settings = Settings(
            host=host, port=port, bots_dir=folder, playground=True, web_concurrency=1
        )
    except ValidationError as exc:
        print(f"not starting: {describe_invalid(exc)}", file=sys.stderr)
        return 1
    configure_logs(settings)  # as app.py: LOG_FORMAT, LOG_LEVEL, secrets redacted
    try:
        app = create_app(settings=settings, keep_going=True)
        clash = sorted(set(remotes) & set(app.extensions["engine"].bots))
        if clash:
            print(
                f"not starting: --connect {', '.join(clash)}: a bot in {folder} has that "
                "name; connect it under another",
                file=sys.stderr,
            )
            return 1
        connect(app, remotes)
        canvas_apps.use_folder(app, canvas)
        server = Server(app, settings, watch=True)
    except EngineError as exc:
        print(f"not starting:\n{exc}", file=sys.stderr)
        return 1
    shown = f"[{host}]" if ":" in host else host
    print(f"playground: http://{shown}:{server.port}/play/", flush=True)
    server.run()
    return 0
