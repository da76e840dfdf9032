"""Serve every bot in bots/ over the Poe protocol: `python app.py` (HOST, PORT from the env)."""

# First, before anything imports ssl or socket: the app (and the model SDKs it preloads) is
# built in this process and then forked into gevent workers, whose sockets, TLS included,
# must all be cooperative.
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import sys  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from engine.envfile import EnvFile, load_env_file  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from engine.server import Server  # noqa: E402
from engine.settings import Settings, describe_invalid  # noqa: E402
from engine.web import create_app  # noqa: E402

log = logging.getLogger("engine")


def report_env_file(env_file: EnvFile | None) -> None:
    if env_file is None:
        return
    if env_file.loaded or env_file.kept:
        log.info("%s", env_file.summary)
    for problem in env_file.problems:
        log.warning("%s", problem)


def main() -> None:
    env_file = load_env_file()
    try:
        settings = Settings()
    except ValidationError as exc:
        for problem in env_file.problems if env_file else ():
            print(f"warning: {problem}", file=sys.stderr)
        sys.exit(f"not starting: {describe_invalid(exc)}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    report_env_file(env_file)
    try:
        app = create_app(settings=settings)
    except EngineError as exc:
        sys.exit(f"not starting:\n{exc}")
    Server(app, settings).run()


if __name__ == "__main__":
    main()
