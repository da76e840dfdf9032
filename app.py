"""Serve every bot in bots/ over the Poe protocol: `python app.py` (HOST, PORT from the env)."""

import logging
import sys

from pydantic import ValidationError

from engine.errors import EngineError
from engine.server import Server
from engine.settings import Settings, describe_invalid
from engine.web import create_app

if __name__ == "__main__":
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.exit(f"not starting: {describe_invalid(exc)}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings=settings)
    except EngineError as exc:
        sys.exit(f"not starting:\n{exc}")
    Server(app, settings).run()
