"""`python -m engine.healthcheck`: the container's HEALTHCHECK, exit 0 when /healthz answers.

Python rather than curl, which slim images lack; the standard library only, and nothing of
the engine imported, so a check costs a few milliseconds and never depends on the bots.
It asks the server in the same container, on loopback, at the PORT it binds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def check(port: str) -> str | None:
    """None when GET /healthz answers 200; else why not, for `docker inspect` to show."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} did not answer: {exc}"
    return None


def main() -> None:
    problem = check(os.environ.get("PORT", "8080"))
    if problem is not None:
        sys.exit(f"unhealthy: {problem}")


if __name__ == "__main__":
    main()
