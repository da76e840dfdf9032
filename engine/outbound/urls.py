"""A call's URL: the origin its template fixes, and values quoted so they cannot move it."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}
TEMPLATE_OPENERS = ("{{", "{%", "{#")
# scheme://authority, then where the authority ends: `/`, `?`, `#` or the end of the text.
AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([/?#]|$)")


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: what a call's URL reaches, whatever its path and query."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: httpx.URL) -> Origin:
        return cls(url.scheme, url.raw_host.decode("ascii"), url.port or DEFAULT_PORTS[url.scheme])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def template_origin(url_template: str) -> Origin:
    """The origin a URL template always calls, or ValueError if a value could change it.

    Templates (`{{ }}`, `{% %}`, `{# #}`) may come only after the host has ended with `/`,
    `?` or `#`: `https://api.example.com/orders/{{ vars.id }}` is fine,
    `https://{{ vars.site }}/`, `https://api.example.com{{ path }}` and
    `https://api.example.com:{{ port }}/` are not.
    """
    cut = min((i for o in TEMPLATE_OPENERS if (i := url_template.find(o)) != -1), default=-1)
    fixed = url_template if cut == -1 else url_template[:cut]
    match = AUTHORITY.match(fixed)
    if match is None or (cut != -1 and not match.group(3)):
        raise ValueError(
            "write the URL's scheme and host without templates, ending the host with '/', "
            "like https://api.example.com/orders/{{ vars.order_id }}"
        )
    if match.group(1).lower() not in DEFAULT_PORTS:
        raise ValueError(f"the URL must start with http:// or https://, not {match.group(1)}://")
    try:
        url = httpx.URL(fixed[: match.end(2)])
    except httpx.InvalidURL as exc:
        raise ValueError(f"the URL's host is not valid ({exc})") from None
    if url.userinfo:
        raise ValueError("the URL has a user name or password; send credentials in a header")
    if not url.raw_host:
        raise ValueError("the URL has no host")
    return Origin.of(url)


def quote_value(value: object) -> str:
    """Percent-encode one value filled into a URL template (Jinja's `finalize`).

    Every character but letters, digits and `-._~` is encoded, so a value stays inside its
    path segment or query value: `/`, `?`, `#`, `@`, `\\`, `%` and `&` cannot start another
    part, and a value of only dots cannot climb the path (`..` becomes `%2E%2E`).
    """
    quoted = urllib.parse.quote(value if isinstance(value, str) else str(value), safe="")
    return quoted.replace(".", "%2E") if quoted and not quoted.strip(".") else quoted
