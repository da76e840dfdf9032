import sys

from .cli import main
from .envfile import load_env_file

# `.env` in the current folder first, for every command; variables already set win.
env_file = load_env_file()
for problem in env_file.problems if env_file else ():
    print(f"warning: {problem}", file=sys.stderr)
main(prog_name="python -m engine")
