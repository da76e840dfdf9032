"""Serve every bot in bots/ over the Poe protocol: `python app.py` (settings: `--help`)."""

# First, before anything imports ssl or socket: the app (and the model SDKs it preloads) is
# built in this process and then forked into gevent workers, whose sockets, TLS included,
# must all be cooperative.
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from engine.envfile import EnvFile, load_env_file  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from engine.loader.models import BASE_URL_VARIABLES  # noqa: E402
from engine.logs import configure as configure_logs  # noqa: E402
from engine.providers.sdk import KEY_VARIABLES  # noqa: E402
from engine.server import Server  # noqa: E402
from engine.settings import Settings, describe_invalid, describe_settings  # noqa: E402
from engine.web import create_app  # noqa: E402

log = logging.getLogger("engine")

ABOUT = """\
Serve every bot file in BOTS_DIR to Poe, on gunicorn with gevent workers, at
POST /<bot-name>. It takes no arguments: the settings below come from the
environment, and from .env in the current folder (variables already set win)."""


def check_arguments(argv: Sequence[str]) -> None:
    """`--help` prints every setting and exits 0; any other argument exits 2."""
    providers = sorted([*KEY_VARIABLES.values(), *BASE_URL_VARIABLES.values()])
    more = (
        f"Models read {', '.join(providers)}; each bot reads the access-key variable its file "
        "names. .env.example lists every variable; README.md, Deploying, says more."
    )
    epilog = (
        f"settings (variable, default, meaning):\n{describe_settings()}\n\n"
        f"{textwrap.fill(more, 100)}"
    )
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description=ABOUT,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (settings come from the environment, "
            "as in PORT=8000 python app.py; see --help)"
        )


def report_env_file(env_file: EnvFile | None) -> None:
    if env_file is None:
        return
    if env_file.loaded or env_file.kept:
        log.info("%s", env_file.summary)
    for problem in env_file.problems:
        log.warning("%s", problem)


def main(argv: Sequence[str]) -> None:
    check_arguments(argv)
    env_file = load_env_file()
    try:
        settings = Settings()
    except ValidationError as exc:
        for problem in env_file.problems if env_file else ():
            print(f"warning: {problem}", file=sys.stderr)
        sys.exit(f"not starting: {describe_invalid(exc)}")
    configure_logs(settings)
    report_env_file(env_file)
    try:
        server = Server(create_app(settings=settings), settings)
    except EngineError as exc:
        sys.exit(f"not starting:\n{exc}")
    server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
