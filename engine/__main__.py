import sys

if sys.argv[1:2] == ["play"]:
    # `play` serves from gunicorn's gevent workers, forked from this process after it has
    # built the app: every socket and TLS context made before the fork (the model SDKs
    # preload their clients) must already be gevent's, so patch before anything imports
    # ssl or socket. The other commands run plain, blocking Python.
    from gevent import monkey

    monkey.patch_all()

from .envfile import load_env_file  # noqa: E402
from .errors import LibyamlMissing  # noqa: E402

try:
    from .cli import main
except LibyamlMissing as exc:  # a broken install: its remedy, without a traceback
    sys.exit(f"error: {exc}")

# `.env` in the current folder first, for every command; variables already set win.
env_file = load_env_file()
for problem in env_file.problems if env_file else ():
    print(f"warning: {problem}", file=sys.stderr)
main(prog_name="python -m engine")
